"""Labels of the concept atlas's Concepts (``neurflow link``): a concept is a cluster of
semantic groups of many classes, so it is labelled from the exemplar patches of its members
(the ``n_members`` semantic groups closest to its centre, ``per_member`` patches each).

Stored per model beside the class artifacts (``<out>/<model>/concept_labels.json``), with a
fingerprint of the artifacts the atlas was built from (class index and checksum of each):
the atlas is a deterministic function of them, so ``neurflow link`` restores the labels when
the fingerprint matches and drops them otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..graph.schema import concept_uid
from .base import GroupView, class_job, now
from .store import GroupLabel, artifact_checksum

__all__ = ["CONCEPT_LABELS_FILE", "atlas_fingerprint", "label_concepts", "read_concept_labels", "write_concept_labels_to_graph"]

CONCEPT_LABELS_FILE = "concept_labels.json"


def atlas_fingerprint(directories: Sequence[Path]) -> str:
    """sha256 over (class index, artifact checksum) of the classes of one model's atlas."""
    items = []
    for d in directories:
        doc = json.loads((Path(d) / "circuit.json").read_text(encoding="utf-8"))
        items.append((int(doc["class"]["index"]), artifact_checksum(d)))
    return "sha256:" + hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


def _by_model(directories: Sequence[Path]) -> dict[str, list[Path]]:
    from ..graph.schema import model_uid

    out: dict[str, dict[int, Path]] = defaultdict(dict)
    for d in directories:
        doc = json.loads((Path(d) / "circuit.json").read_text(encoding="utf-8"))
        out[model_uid(doc["model"]["name"], doc["model"]["fingerprint"])][int(doc["class"]["index"])] = Path(d)
    return {m: [dirs[i] for i in sorted(dirs)] for m, dirs in out.items()}


def _store_path(directories: Sequence[Path]) -> Path:
    return Path(directories[0]).parent / CONCEPT_LABELS_FILE


def read_concept_labels(directories: Sequence[Path]) -> dict[str, GroupLabel]:
    """Concept uid -> label, for the atlas of these artifacts of one model; empty when none
    are stored or they were made for another set or version of artifacts."""
    if not directories:
        return {}
    path = _store_path(directories)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("fingerprint") != atlas_fingerprint(directories):
            return {}
        return {uid: GroupLabel(**g) for uid, g in doc["concepts"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def label_concepts(
    artifact_dirs: Sequence[Path],
    labeller,
    *,
    force: bool = False,
    n_members: int = 8,
    per_member: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, GroupLabel]]:
    """Label the atlas concepts of every model found under ``artifact_dirs`` (all of a model's
    artifacts there make its atlas, as in ``neurflow link``). Returns ``{model uid: {concept uid: label}}``."""
    from neurflow.atlas import build_atlas

    from ..pipeline import find_artifacts

    out: dict[str, dict[str, GroupLabel]] = {}
    for model, dirs in sorted(_by_model(find_artifacts([Path(d) for d in artifact_dirs])).items()):
        stored = read_concept_labels(dirs)
        path = _store_path(dirs)
        if stored and not force and all(g.source == labeller.source for g in stored.values()):
            out[model] = stored
            if log:
                log(f"  {model}: {len(stored)} concepts already labelled by {labeller.source}, reused")
            continue
        jobs = {}
        for d in dirs:
            job = class_job(d)
            jobs[job.circuit.class_index] = job
        atlas = build_atlas([j.circuit for j in jobs.values()])
        members: dict[tuple[str, int], list] = defaultdict(list)
        for a in atlas.assignments:
            members[(a.neuron.layer, a.concept)].append(a)
        labels: dict[str, GroupLabel] = {}
        stamp = now()
        for k in atlas.concepts:
            chosen = sorted(members[(k.layer, k.index)], key=lambda a: (a.distance, a.class_index, a.neuron.channel, a.semantic_group))[:n_members]
            patches = []
            for a in chosen:
                job = jobs[a.class_index]
                sg = next(s for s in job.circuit.semantic_groups if s.neuron == a.neuron and s.index == a.semantic_group)
                thumbs = _thumbs(job.directory)
                for p in sg.exemplar_ids[:per_member]:
                    box = tuple(int(v) for v in job.circuit.patches.boxes[p])
                    patches.append((job, job.circuit.image_ids[int(job.circuit.patches.image_index[p])], box, thumbs.get(p)))
            view = GroupView(k.layer, k.index, jobs[next(iter(jobs))].circuit.layers.index(k.layer), tuple(p[1] for p in patches), tuple(p[2] for p in patches), tuple(p[3] for p in patches))
            names = [jobs[c].class_name for c in k.classes if c in jobs]
            lab = labeller.label_concept([p[0] for p in patches], view, names)
            if lab is None:  # a dry run: counted, not asked
                continue
            labels[concept_uid(model, k.layer, k.index)] = GroupLabel(**{**asdict(lab), "labelled_at": stamp})
        if getattr(labeller, "dry_run", False):
            continue
        doc = {"fingerprint": atlas_fingerprint(dirs), "source": labeller.source, "concepts": {uid: asdict(g) for uid, g in sorted(labels.items())}}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        out[model] = labels
        if log:
            log(f"  {model}: labelled {len(labels)} atlas concepts ({labeller.source})")
    return out


def _thumbs(directory: Path) -> dict[int, Path]:
    folder = Path(directory) / "thumbs"
    return {int(f.stem[1:]): f for f in folder.glob("p*.png")} if folder.is_dir() else {}


CONCEPT_WRITE = (
    "UNWIND $rows AS r MATCH (k:Concept {uid: r.uid}) SET k.label = r.label, k.description = r.description, "
    "k.label_score = r.score, k.label_source = r.source, k.labelled_at = r.labelled_at, k.caption = r.label"
)


def concept_rows(labels: dict[str, GroupLabel]) -> list[dict]:
    return [
        {"uid": uid, "label": g.label, "description": g.description, "score": g.score, "source": g.source, "labelled_at": g.labelled_at}
        for uid, g in sorted(labels.items())
    ]


def write_concept_labels_to_graph(conn, labels: dict[str, dict[str, GroupLabel]]) -> int:
    """SET the labels on the Concept nodes (one managed transaction per model)."""
    from ..graph.writer import run_write

    n = 0
    for _model, per in sorted(labels.items()):
        run_write(conn.driver, conn.database, CONCEPT_WRITE, rows=concept_rows(per))
        n += len(per)
    return n
