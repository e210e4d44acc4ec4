"""What a labeller sees of a class, the labeller interface, and the templated relation text."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from neurflow.circuit import Circuit

from .store import GroupLabel, RelationLabel

__all__ = ["ClassJob", "GroupView", "Labeller", "class_job", "template_relation", "now"]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class GroupView:
    """One neuron group as a labeller sees it: its exemplar patches (closest to the group's
    centre first) as (image id, box in the preprocessed image, thumbnail file or None)."""

    layer: str
    index: int
    depth: int
    image_ids: tuple[str, ...]
    boxes: tuple[tuple[int, ...], ...]  # (x0, y0, x1, y1) each
    thumbnails: tuple[Path | None, ...]


@dataclass(frozen=True)
class ClassJob:
    """One class artifact to label.

    Attributes:
        directory: the artifact folder.
        circuit: the circuit read from it.
        class_name: the class's name.
        layers: the circuit's layers, logit layer first.
        groups: the groups to label, lowest layer first (a relation needs its child's label).
        edges: ``(child layer, child index, parent layer, parent index) -> (W, share)``.
        preprocess: ``{"input_size", "resize"}`` from the artifact's run record, or None.
    """

    directory: Path
    circuit: Circuit
    class_name: str
    layers: tuple[str, ...]
    groups: tuple[GroupView, ...]
    edges: dict[tuple[str, int, str, int], tuple[float, float]]
    preprocess: dict | None


def class_job(directory: Path, layers: tuple[str, ...] | None = None) -> ClassJob:
    """Read an artifact into a :class:`ClassJob` (``layers``: only groups of these layers)."""
    from ..pipeline import read_artifact

    circuit, run, thumbs = read_artifact(directory)
    depth = {layer: i for i, layer in enumerate(circuit.layers)}
    groups = []
    for g in sorted(circuit.groups, key=lambda g: (-depth[g.layer], g.index)):
        if layers and g.layer not in layers:
            continue
        ids = tuple(circuit.image_ids[int(circuit.patches.image_index[p])] for p in g.exemplar_ids)
        boxes = tuple(tuple(int(v) for v in circuit.patches.boxes[p]) for p in g.exemplar_ids)
        groups.append(GroupView(g.layer, g.index, depth[g.layer], ids, boxes, tuple(Path(thumbs[p]) if p in thumbs else None for p in g.exemplar_ids)))
    into: dict[tuple[str, int], float] = {}
    for e in circuit.group_edges:
        into[(e.parent_layer, e.parent_index)] = into.get((e.parent_layer, e.parent_index), 0.0) + abs(e.weight)
    edges = {
        (e.child_layer, e.child_index, e.parent_layer, e.parent_index): (
            float(e.weight),
            abs(e.weight) / into[(e.parent_layer, e.parent_index)] if into[(e.parent_layer, e.parent_index)] > 0 else 0.0,
        )
        for e in circuit.group_edges
    }
    preprocess = None
    if run is not None and run.get("preprocess"):
        try:
            preprocess = json.loads(run["preprocess"]) if isinstance(run["preprocess"], str) else dict(run["preprocess"])
        except (TypeError, ValueError):
            preprocess = None
    return ClassJob(Path(directory), circuit, circuit.class_name, tuple(circuit.layers), tuple(groups), edges, preprocess)


class Labeller(Protocol):
    """Labels the neuron groups and FLOWS_TO relations of one class.

    ``source`` names the labeller and everything that changes its answers (model, prompt
    version); a stored label set made by the same source is reused without asking again.
    """

    name: str

    @property
    def source(self) -> str: ...

    def label_class(self, job: ClassJob) -> tuple[dict[tuple[str, int], GroupLabel], dict[tuple[str, int, str, int], RelationLabel]]:
        """Labels of ``job.groups`` and of the edges between labelled groups."""
        ...


def template_relation(child: GroupLabel, parent: GroupLabel, weight: float, share: float, source: str) -> RelationLabel:
    """Relation text made from the two groups' labels and the edge weight (no model asked)."""
    sign = "supports" if weight >= 0 else "inhibits"
    text = (
        f"'{child.label}' ({child.layer} g{child.index}) {sign} '{parent.label}' ({parent.layer} g{parent.index}): "
        f"{share:.0%} of the attribution into '{parent.label}' comes from it (W = {weight:+.3g})"
    )
    return RelationLabel(child.layer, child.index, parent.layer, parent.index, text, source)
