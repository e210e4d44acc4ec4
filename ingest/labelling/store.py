"""Labels of one class's concept circuit, stored beside its artifact (``labels.json``).

A label store belongs to one artifact *as computed*: it records the artifact's checksum
(:func:`artifact_checksum`, the sha256 of ``circuit.json``, which itself holds the sha256
of ``arrays.npz``), and :func:`read_labels` returns nothing when the artifact has changed
since. Loading a class (``neurflow load``) reads the store the same way, so a reload of an
unchanged artifact keeps its labels and a recomputed one loses them.

File format (``<artifact>/labels.json``, written atomically)::

    {"schema_version": 1, "kind": "neurflow.labels",
     "artifact_checksum": "sha256:...", "source": "annotations", "labelled_at": "...",
     "groups": [{"layer", "index", "label", "description", "score", "runner_up",
                 "part_of_class", "source", "labelled_at"}, ...],
     "relations": [{"child_layer", "child_index", "parent_layer", "parent_index",
                    "relation", "source"}, ...]}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neurflow.artifact import write_json_atomic

__all__ = [
    "LABELS_FILE",
    "GroupLabel",
    "RelationLabel",
    "ClassLabels",
    "artifact_checksum",
    "read_labels",
    "read_class_labels",
    "write_class_labels",
]

LABELS_FILE = "labels.json"
_SCHEMA = 1
_KIND = "neurflow.labels"


@dataclass(frozen=True)
class GroupLabel:
    """A neuron group described in words.

    Attributes:
        layer: the group's layer.
        index: the group's index within its layer.
        label: a short name ("flowers", "black and yellow stripes").
        description: one or two sentences on what the group's exemplar patches share.
        score: the labeller's score in [0, 1] (annotations: the best concept's pixel share in
            the exemplar patches; openai: the model's stated confidence), or None.
        runner_up: the second-best concept (annotations) or None.
        part_of_class: whether the concept belongs to the class's own object (True), is
            something else such as a background (False), or could not be decided (None;
            the annotations labeller's "mixed" groups).
        source: who labelled it: ``annotations`` or ``openai:<model>:<prompt version>``.
        labelled_at: UTC time, ``YYYY-MM-DDTHH:MM:SSZ``.
        class_share: annotations only: the share of the exemplar pixels that show the class's
            own concepts (also for mixed groups, whose ``part_of_class`` is None); else None.
    """

    layer: str
    index: int
    label: str
    description: str
    score: float | None
    runner_up: str | None
    part_of_class: bool | None
    source: str
    labelled_at: str
    class_share: float | None = None


@dataclass(frozen=True)
class RelationLabel:
    """A FLOWS_TO edge (child group, one layer below -> parent group) described in words."""

    child_layer: str
    child_index: int
    parent_layer: str
    parent_index: int
    relation: str
    source: str


@dataclass(frozen=True)
class ClassLabels:
    """Everything stored for one artifact."""

    artifact_checksum: str
    source: str
    labelled_at: str
    groups: dict[tuple[str, int], GroupLabel] = field(default_factory=dict)
    relations: dict[tuple[str, int, str, int], RelationLabel] = field(default_factory=dict)


def artifact_checksum(artifact_dir: Path) -> str | None:
    """``sha256:`` of the artifact's ``circuit.json`` (None when there is none)."""
    path = Path(artifact_dir) / "circuit.json"
    if not path.is_file():
        return None
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def read_class_labels(artifact_dir: Path) -> ClassLabels | None:
    """The stored labels of an artifact, or None when there are none, the file is not a label
    store, or they were made for another version of the artifact (checksum differs)."""
    path = Path(artifact_dir) / LABELS_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("kind") != _KIND or doc.get("schema_version") != _SCHEMA:
            return None
        if doc.get("artifact_checksum") != artifact_checksum(artifact_dir):
            return None
        groups = {}
        for g in doc["groups"]:
            lab = GroupLabel(
                layer=str(g["layer"]), index=int(g["index"]), label=str(g["label"]), description=str(g["description"]),
                score=None if g.get("score") is None else float(g["score"]), runner_up=g.get("runner_up"),
                part_of_class=g.get("part_of_class"), source=str(g["source"]), labelled_at=str(g["labelled_at"]),
                class_share=None if g.get("class_share") is None else float(g["class_share"]),
            )
            groups[(lab.layer, lab.index)] = lab
        relations = {}
        for r in doc.get("relations", []):
            rel = RelationLabel(str(r["child_layer"]), int(r["child_index"]), str(r["parent_layer"]), int(r["parent_index"]), str(r["relation"]), str(r["source"]))
            relations[(rel.child_layer, rel.child_index, rel.parent_layer, rel.parent_index)] = rel
        return ClassLabels(doc["artifact_checksum"], str(doc.get("source", "")), str(doc.get("labelled_at", "")), groups, relations)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def read_labels(artifact_dir: Path) -> dict[tuple[str, int], GroupLabel]:
    """The group labels stored beside a class artifact: ``(layer, group index) -> GroupLabel``.

    Empty when nothing is stored or the labels were made for another version of the
    artifact (its checksum changed since).
    """
    stored = read_class_labels(artifact_dir)
    return dict(stored.groups) if stored is not None else {}


def write_class_labels(artifact_dir: Path, labels: ClassLabels) -> Path:
    """Write ``labels.json`` atomically (temporary file, fsync, rename)."""
    path = Path(artifact_dir) / LABELS_FILE
    doc = {
        "schema_version": _SCHEMA,
        "kind": _KIND,
        "artifact_checksum": labels.artifact_checksum,
        "source": labels.source,
        "labelled_at": labels.labelled_at,
        "groups": [asdict(g) for _, g in sorted(labels.groups.items())],
        "relations": [asdict(r) for _, r in sorted(labels.relations.items())],
    }
    write_json_atomic(path, doc)
    return path
