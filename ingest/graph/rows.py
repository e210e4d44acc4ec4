"""Pure row builders: a circuit artifact -> one list of parameter rows per write statement.

No database here. ``neurflow load`` (:mod:`.writer`) and ``neurflow export --format
neo4j-admin`` (:mod:`.export`) both take their rows from :func:`circuit_rows`, so the two
produce the same graph. Identities (``uid``) come from :mod:`.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from neurflow.circuit import Circuit

from .path_figures import TOP_PATHS, PathEdge, path_figures
from .schema import (
    class_uid,
    group_paths_uid,
    group_uid,
    layer_uid,
    model_uid,
    neuron_uid,
    patch_uid,
    sg_uid,
)

__all__ = ["GraphRows", "LABEL_PROPS", "artifact_rows", "circuit_rows", "label_props", "patch_props"]


def patch_props(circuit: Circuit, cls: str, patch_id: int, thumbnail: str | None = None) -> dict:
    """Properties of a Patch node: its image, crop box and scale in the class's patch grid."""
    grid = circuit.patches
    return {
        "class": cls,
        "patch_id": int(patch_id),
        "image": circuit.image_ids[int(grid.image_index[patch_id])],
        "box": [int(v) for v in grid.boxes[patch_id]],
        "scale": float(grid.scales[patch_id]),
        "thumbnail": thumbnail,
    }


#: NeuronGroup properties written from a label store (``neurflow label``); all null when the
#: group is unlabelled. ``caption`` is always set: the label, or ``{layer} g{index}``.
LABEL_PROPS = ("label", "description", "label_score", "label_runner_up", "part_of_class", "label_source", "labelled_at")


def label_props(layer: str, index: int, label=None) -> dict:
    """NeuronGroup properties of a group's label (a ``neurflow.ingest.labelling.GroupLabel``,
    or None: every label property null and the caption ``{layer} g{index}``)."""
    if label is None:
        return {**{k: None for k in LABEL_PROPS}, "caption": f"{layer} g{index}"}
    return {
        "label": label.label,
        "description": label.description,
        "label_score": label.score,
        "label_runner_up": label.runner_up,
        "part_of_class": label.part_of_class,
        "label_source": label.source,
        "labelled_at": label.labelled_at,
        "caption": label.label,
    }


@dataclass
class GraphRows:
    """Rows for every write statement of one class, keyed by statement name.

    ``nodes`` and ``rels`` give the counts the graph must hold for this class afterwards.
    """

    model: str
    cls: str
    rows: dict[str, list[dict]] = field(default_factory=dict)

    def count(self, name: str) -> int:
        return len(self.rows.get(name, []))


def circuit_rows(
    circuit: Circuit, *, run: dict | None = None, artifact_dir: Path | None = None, thumbnails: dict[int, str] | None = None, labels=None,
    top_paths: int = TOP_PATHS,
) -> GraphRows:
    """Build the rows that load one circuit (see :mod:`neurflow.ingest.graph.writer`).

    Args:
        circuit: the circuit.
        run: provenance of the computation (``uid``, ``started``, ``finished``, ...).
        artifact_dir: where the artifact lives (stored on the Class node).
        thumbnails: patch id -> thumbnail file path.
        labels: the artifact's stored labels (``neurflow.ingest.labelling.ClassLabels``, read
            only when made for this artifact), or None.
        top_paths: strongest paths to the root kept per group (``GroupPaths`` nodes, read by
            trace_class and trace_group_up; see :mod:`neurflow.ingest.graph.path_figures`).

    Returns:
        :class:`GraphRows` with one list of parameter rows per statement.
    """
    m = model_uid(circuit.model_name, circuit.model_fingerprint)
    c = class_uid(m, circuit.class_index)
    depth = {layer: i for i, layer in enumerate(circuit.layers)}
    thumbnails = thumbnails or {}
    out = GraphRows(model=m, cls=c)
    r = out.rows
    r["model"] = [{"uid": m, "name": circuit.model_name, "fingerprint": circuit.model_fingerprint}]
    r["layer"] = [{"uid": layer_uid(m, layer), "model": m, "name": layer, "depth": depth[layer]} for layer in circuit.layers]
    r["layer_feeds"] = [{"lower": layer_uid(m, lo), "upper": layer_uid(m, up)} for up, lo in zip(circuit.layers[:-1], circuit.layers[1:])]
    neurons = circuit.neurons()
    r["neuron"] = [
        {"uid": neuron_uid(m, n), "model": m, "layer": n.layer, "layer_uid": layer_uid(m, n.layer), "channel": n.channel, "depth": depth[n.layer]}
        for n in neurons
    ]
    r["class"] = [
        {
            "uid": c,
            "model": m,
            "props": {
                "index": circuit.class_index,
                "name": circuit.class_name,
                "model": m,
                "n_images": len(circuit.image_ids),
                "n_patches": len(circuit.patches),
                "data_fingerprint": circuit.data_fingerprint,
                "layers": list(circuit.layers),
                "tau": circuit.config.tau,
                "k": circuit.config.k,
                "steps": circuit.config.steps,
                "artifact": str(artifact_dir) if artifact_dir is not None else None,
                "paths_kept": top_paths,
            },
        }
    ]
    r["class_logit"] = [{"cls": c, "neuron": neuron_uid(m, circuit.root)}]
    r["semantic_group"] = [
        {
            "uid": sg_uid(c, sg.neuron, sg.index),
            "cls": c,
            "neuron": neuron_uid(m, sg.neuron),
            "props": {
                "class": c,
                "model": m,
                "layer": sg.neuron.layer,
                "channel": sg.neuron.channel,
                "index": sg.index,
                "size": len(sg.patch_ids),
                "mean_activation": sg.mean_activation,
                "space": sg.space,
                "depth": depth[sg.neuron.layer],
            },
        }
        for sg in circuit.semantic_groups
    ]
    rank = {(t.target, ch): i for t in circuit.targets for i, ch in enumerate(t.core)}
    r["contributes"] = [
        {
            "child": neuron_uid(m, e.child),
            "sg": sg_uid(c, e.parent, e.group),
            "weight": e.weight,
            "abs_weight": abs(e.weight),
            "importance": e.importance,
            "rank": rank[(e.parent, e.child.channel)],
            "cls": c,
        }
        for e in circuit.edges
    ]
    into_parent: dict[tuple[str, int], float] = {}
    for e in circuit.group_edges:
        into_parent[(e.parent_layer, e.parent_index)] = into_parent.get((e.parent_layer, e.parent_index), 0.0) + abs(e.weight)

    def share(e) -> float:
        # the fraction of the parent's incoming |W| this edge carries; a path's product of
        # shares is the fraction of the root's attribution routed along it
        total = into_parent[(e.parent_layer, e.parent_index)]
        return abs(e.weight) / total if total > 0 else 0.0

    # path figures by dynamic programs over the layered DAG (no path enumeration)
    figures = path_figures(
        {group_uid(c, g.layer, g.index): depth[g.layer] for g in circuit.groups},
        [PathEdge(group_uid(c, e.child_layer, e.child_index), group_uid(c, e.parent_layer, e.parent_index), share(e), e.weight) for e in circuit.group_edges],
        top_paths,
    )
    group_labels = labels.groups if labels is not None else {}
    relations = labels.relations if labels is not None else {}
    r["neuron_group"] = [
        {
            "uid": group_uid(c, g.layer, g.index),
            "cls": c,
            "props": {
                "class": c,
                "model": m,
                "layer": g.layer,
                "index": g.index,
                "depth": depth[g.layer],
                "n_members": len(g.members),
                "n_neurons": len(g.neurons),
                "channels": [n.channel for n in g.neurons],
                "n_patches": len(g.patch_ids),
                "root": depth[g.layer] == 0,
                **label_props(g.layer, g.index, group_labels.get((g.layer, g.index))),
                **_figure_props(figures[group_uid(c, g.layer, g.index)]),
            },
        }
        for g in circuit.groups
    ]
    index_of = {group_uid(c, g.layer, g.index): g.index for g in circuit.groups}
    r["group_paths"] = [
        {"uid": group_paths_uid(uid), "props": {"class": c, "group": uid, "depth": depth[g.layer], **_top_props(figures[uid], index_of)}}
        for g in circuit.groups
        for uid in (group_uid(c, g.layer, g.index),)
    ]
    r["member_of"] = [
        {"sg": sg_uid(c, mem.neuron, mem.semantic_group), "group": group_uid(c, g.layer, g.index)} for g in circuit.groups for mem in g.members
    ]
    r["flows_to"] = [
        {
            "child": group_uid(c, e.child_layer, e.child_index),
            "parent": group_uid(c, e.parent_layer, e.parent_index),
            "weight": e.weight,
            "abs_weight": abs(e.weight),
            "share": share(e),
            "n_edges": e.n_edges,
            "relation": rel.relation if (rel := relations.get((e.child_layer, e.child_index, e.parent_layer, e.parent_index))) else None,
        }
        for e in circuit.group_edges
    ]
    referenced = sorted({p for sg in circuit.semantic_groups for p in sg.exemplar_ids} | {p for g in circuit.groups for p in g.exemplar_ids})
    r["patch"] = [{"uid": patch_uid(c, p), "cls": c, "props": patch_props(circuit, c, p, thumbnails.get(p))} for p in referenced]
    act_of = {}
    for sg in circuit.semantic_groups:
        for pid, a in zip(sg.patch_ids, sg.activations):
            act_of[(sg.neuron, pid)] = a
    r["sg_exemplar"] = [
        {"sg": sg_uid(c, sg.neuron, sg.index), "patch": patch_uid(c, p), "rank": i, "activation": act_of[(sg.neuron, p)]}
        for sg in circuit.semantic_groups
        for i, p in enumerate(sg.exemplar_ids)
    ]
    r["group_exemplar"] = [
        {"group": group_uid(c, g.layer, g.index), "patch": patch_uid(c, p), "rank": i} for g in circuit.groups for i, p in enumerate(g.exemplar_ids)
    ]
    root_groups = [g for g in circuit.groups if g.layer == circuit.layers[0]]
    r["class_root"] = [{"cls": c, "group": group_uid(c, g.layer, g.index)} for g in root_groups]
    r["class_group"] = [{"cls": c, "group": group_uid(c, g.layer, g.index)} for g in circuit.groups]
    if run is not None:
        r["run"] = [{"uid": run["uid"], "cls": c, "props": {k: v for k, v in run.items() if k != "uid"}}]
    return out


def _figure_props(f) -> dict:
    """NeuronGroup properties of its path figures (:class:`~neurflow.ingest.graph.path_figures.GroupPaths`)."""
    return {"root_share": f.root_share, "best_path": f.best_path, "n_paths": f.n_paths}


def _top_props(f, index_of: dict[str, int]) -> dict:
    """GroupPaths properties: the kept paths as parallel lists (a path of a group at depth d has
    d + 1 groups, so ``indices`` holds path i's group indices, bottom up, at [i*(d+1), (i+1)*(d+1)))."""
    return {
        "n_paths": f.n_paths,
        "kept": len(f.top),
        "weights": [w for w, _, _ in f.top],
        "signed": [s for _, s, _ in f.top],
        "indices": [index_of[u] for _, _, path in f.top for u in path],
    }


def artifact_rows(directory: Path, *, top_paths: int = TOP_PATHS) -> GraphRows:
    """The rows of one artifact directory, as ``neurflow load`` and ``neurflow export`` write them:
    its circuit, run record (scalar fields), thumbnails, and its stored labels when they were
    made for this very artifact.

    Raises:
        ArtifactError: the artifact is missing, incomplete or corrupt.
    """
    from ..labelling.store import read_class_labels
    from ..pipeline import _run_props, read_artifact

    circuit, run, thumbs = read_artifact(directory)
    return circuit_rows(circuit, run=_run_props(run), artifact_dir=Path(directory).resolve(), thumbnails=thumbs,
                        labels=read_class_labels(directory), top_paths=top_paths)
