"""``neurflow link``: compute the concept atlas from artifacts and write it to the graph.

The atlas of a model is replaced as a whole (its Concept nodes and its neuron groups'
SIMILAR_TO relationships are deleted, then written again), so re-running after more
classes arrive is idempotent. Only classes present in the graph get links.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import click

from neurflow.atlas import Atlas, build_atlas

from ..pipeline import find_artifacts, read_artifact
from .schema import class_uid, concept_uid, group_uid, model_uid, sg_uid
from .statements import ATLAS_WRITES as _ATLAS
from .writer import DEFAULT_BATCH, batched, ensure_schema, run_write

__all__ = ["ATLAS_WRITES", "ATLAS_CLEANUP", "atlas_rows", "atlas_rows_of_artifacts", "link_artifacts"]

ATLAS_CLEANUP: tuple[str, ...] = (
    "MATCH (k:Concept {model: $model}) DETACH DELETE k",
    "MATCH (:NeuronGroup {model: $model})-[r:SIMILAR_TO]->() DELETE r",
)

#: Statement name -> Cypher of the atlas, in order (declared in :mod:`.statements`).
ATLAS_WRITES: dict[str, str] = {w.name: w.cypher() for w in _ATLAS}


def atlas_rows(model: str, atlas: Atlas) -> dict[str, list[dict]]:
    """Rows for :data:`ATLAS_WRITES` (pure)."""
    concepts = {(k.layer, k.index): concept_uid(model, k.layer, k.index) for k in atlas.concepts}
    return {
        "concept": [
            {
                "uid": concepts[(k.layer, k.index)],
                "model": model,
                "props": {"model": model, "layer": k.layer, "index": k.index, "size": k.size, "n_classes": len(k.classes), "classes": list(k.classes),
                          "caption": f"{k.layer} k{k.index}"},
            }
            for k in atlas.concepts
        ],
        "expresses": [
            {"sg": sg_uid(class_uid(model, a.class_index), a.neuron, a.semantic_group), "concept": concepts[(a.neuron.layer, a.concept)], "distance": a.distance}
            for a in atlas.assignments
        ],
        "similar_to": [
            {
                "a": group_uid(class_uid(model, s.class_a), s.layer, s.group_a),
                "b": group_uid(class_uid(model, s.class_b), s.layer, s.group_b),
                "jaccard": s.jaccard,
                "shared": s.shared,
            }
            for s in atlas.similarities
        ],
    }


def atlas_rows_of_artifacts(directories: Sequence[Path]) -> dict[str, tuple[int, dict[str, list[dict]]]]:
    """The atlas rows of every model among the artifact ``directories`` (no database).

    Concept labels (``neurflow label``) come back when made for this very set of artifacts.

    Returns:
        ``{model uid: (classes in its atlas, rows per statement)}``, models in order.
    """
    from ..labelling.concepts import concept_rows, read_concept_labels

    by_model = defaultdict(list)
    dirs_of: dict[str, dict[int, Path]] = defaultdict(dict)
    for directory in directories:
        circuit, _, _ = read_artifact(directory)
        by_model[model_uid(circuit.model_name, circuit.model_fingerprint)].append(circuit)
        dirs_of[model_uid(circuit.model_name, circuit.model_fingerprint)][circuit.class_index] = directory
    out: dict[str, tuple[int, dict[str, list[dict]]]] = {}
    for model, circuits in sorted(by_model.items()):
        latest = {c.class_index: c for c in circuits}  # one circuit per class
        rows = atlas_rows(model, build_atlas(list(latest.values())))
        stored = {r["uid"]: r for r in concept_rows(read_concept_labels([dirs_of[model][i] for i in sorted(dirs_of[model])]))}
        for r in rows["concept"]:
            if r["uid"] in stored:
                lab = stored[r["uid"]]
                r["props"].update(label=lab["label"], description=lab["description"], label_score=lab["score"], label_source=lab["source"],
                                  labelled_at=lab["labelled_at"], caption=lab["label"])
        out[model] = (len(latest), rows)
    return out


def link_artifacts(conn, paths: Sequence[Path], *, quiet: bool = False, batch_size: int = DEFAULT_BATCH) -> dict[str, dict[str, int]]:
    """Build and write the atlas of every model found under ``paths``.

    Returns:
        ``{model uid: {statement: rows}}``.
    """
    atlases = atlas_rows_of_artifacts(find_artifacts(paths))
    ensure_schema(conn.driver, conn.database)
    written: dict[str, dict[str, int]] = {}
    for model, (n_classes, rows) in atlases.items():
        for statement in ATLAS_CLEANUP:
            run_write(conn.driver, conn.database, statement, model=model)
        for name, query in ATLAS_WRITES.items():
            for batch in batched(rows[name], batch_size):
                run_write(conn.driver, conn.database, query, rows=batch)
        written[model] = {k: len(v) for k, v in rows.items()}
        if not quiet:
            click.echo(
                f"link: {model}: {n_classes} classes, {len(rows['concept'])} concepts, "
                f"{len(rows['expresses'])} semantic-group links, {len(rows['similar_to'])} group similarities"
            )
    return written
