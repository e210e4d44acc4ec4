"""The portable, versioned on-disk form of a :class:`~neurflow.circuit.Circuit`.

An artifact is a directory with two files:

* ``circuit.json``: the structure, readable without this package (schema in
  ``docs/artifact-schema.md``): for every layer and every target neuron, its core neurons
  of the layer below in rank order with their importance scores and Eq. 4 weights, its
  semantic groups with their patch ids, the neuron groups and the concept-circuit edges,
  the config and the fingerprints.
* ``arrays.npz``: the numeric bulk (patch grid, full importance vectors, representative
  vectors, circuit-neuron activations), written with fixed zip timestamps so that the same
  inputs give byte-identical files.

Writes are atomic: both files go to a sibling ``.partial`` directory that is renamed into
place, and ``circuit.json`` records the sha256 of ``arrays.npz``, so a half-written or
tampered artifact is detected by :func:`load_circuit` / :func:`is_complete`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .circuit import (
    SCHEMA_VERSION,
    Circuit,
    CircuitConfig,
    CoreNeurons,
    GroupEdge,
    GroupMember,
    HypertreeEdge,
    NeuronGroup,
    NeuronRef,
    SemanticGroup,
)
from .errors import ArtifactError
from .patches import PatchGrid

__all__ = ["ArtifactError", "save_circuit", "load_circuit", "is_complete", "write_npz", "write_json_atomic", "CIRCUIT_FILE", "ARRAYS_FILE"]

CIRCUIT_FILE = "circuit.json"
ARRAYS_FILE = "arrays.npz"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)




def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so the bytes depend on the data only.

    Written to a temporary file and renamed into place.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def write_json_atomic(path: Path, doc: object, *, indent: int | None = 1) -> None:
    """Write ``doc`` as JSON to a temporary sibling, fsync it, and rename it over ``path``:
    a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=indent)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_json(c: Circuit, arrays_sha: str) -> dict:
    sgs_by_neuron: dict[NeuronRef, list[SemanticGroup]] = {}
    for sg in c.semantic_groups:
        sgs_by_neuron.setdefault(sg.neuron, []).append(sg)
    edges_by: dict[tuple[NeuronRef, int, NeuronRef], HypertreeEdge] = {(e.parent, e.group, e.child): e for e in c.edges}
    cores = {t.target: t for t in c.targets}
    referenced: set[int] = set()
    layers_out = []
    for li, layer in enumerate(c.layers):
        neurons_out = []
        for neuron in sorted(sgs_by_neuron, key=lambda n: n.channel):
            if neuron.layer != layer:
                continue
            groups = sorted(sgs_by_neuron[neuron], key=lambda sg: sg.index)  # the sg_vectors row order
            entry: dict = {
                "channel": neuron.channel,
                "semantic_groups": [
                    {
                        "index": sg.index,
                        "space": sg.space,
                        "patch_ids": list(sg.patch_ids),
                        "activations": list(sg.activations),
                        "exemplar_ids": list(sg.exemplar_ids),
                    }
                    for sg in groups
                ],
            }
            for sg in groups:
                referenced.update(sg.patch_ids)
            core = cores.get(neuron)
            if core is not None:
                entry["core"] = {
                    "lower_layer": core.lower_layer,
                    "concept": list(core.concept),
                    "neurons": [
                        {
                            "rank": rank,
                            "channel": ch,
                            "score": score,
                            "signed": signed,
                            "weights": [edges_by[(neuron, sg.index, NeuronRef(core.lower_layer, ch))].weight for sg in groups],
                            "importance": [edges_by[(neuron, sg.index, NeuronRef(core.lower_layer, ch))].importance for sg in groups],
                        }
                        for rank, (ch, score, signed) in enumerate(zip(core.core, core.scores, core.signed))
                    ],
                }
            neurons_out.append(entry)
        groups_out = [
            {
                "index": g.index,
                "members": [{"channel": m.neuron.channel, "semantic_group": m.semantic_group} for m in g.members],
                "patch_ids": list(g.patch_ids),
                "exemplar_ids": list(g.exemplar_ids),
            }
            for g in c.groups
            if g.layer == layer
        ]
        for g in c.groups:
            if g.layer == layer:
                referenced.update(g.exemplar_ids)
        layers_out.append({"name": layer, "lower": c.layers[li + 1] if li + 1 < len(c.layers) else None, "neurons": neurons_out, "groups": groups_out})
    patches = {
        str(p): {
            "image": int(c.patches.image_index[p]),
            "box": [int(v) for v in c.patches.boxes[p]],
            "scale": float(c.patches.scales[p]),
        }
        for p in sorted(referenced)
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "neurflow.circuit",
        "model": {"name": c.model_name, "fingerprint": c.model_fingerprint, "layers": list(c.layers)},
        "class": {"index": c.class_index, "name": c.class_name},
        "config": c.config.as_dict(),
        "data": {"fingerprint": c.data_fingerprint, "image_ids": list(c.image_ids), "num_patches": len(c.patches), "image_size": c.patches.image_size},
        "environment": dict(c.environment),
        "patches": patches,
        "layers": layers_out,
        "group_edges": [
            {
                "child": {"layer": e.child_layer, "index": e.child_index},
                "parent": {"layer": e.parent_layer, "index": e.parent_index},
                "weight": e.weight,
                "n_edges": e.n_edges,
            }
            for e in c.group_edges
        ],
        "arrays": {"file": ARRAYS_FILE, "sha256": arrays_sha},
    }


def _arrays(c: Circuit) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "patch_image": c.patches.image_index.astype(np.int64),
        "patch_boxes": c.patches.boxes.astype(np.int64),
        "patch_scales": c.patches.scales.astype(np.float64),
    }
    for layer in c.layers:
        # rows in channel order: the order load_circuit reads the JSON's neurons in
        targets = sorted((t for t in c.targets if t.target.layer == layer), key=lambda t: t.target.channel)
        if targets:
            arrays[f"importance:{layer}"] = np.stack([t.all_scores for t in targets]).astype(np.float32)
        sgs = sorted((sg for sg in c.semantic_groups if sg.neuron.layer == layer), key=lambda s: (s.neuron.channel, s.index))
        if sgs:
            arrays[f"sg_vectors:{layer}"] = np.stack([sg.vector for sg in sgs]).astype(np.float32)
        groups = [g for g in c.groups if g.layer == layer]
        if groups:
            arrays[f"group_vectors:{layer}"] = np.stack([g.vector for g in groups]).astype(np.float32)
        if layer in c.neuron_activations:
            channels, acts = c.neuron_activations[layer]
            arrays[f"act_channels:{layer}"] = channels.astype(np.int64)
            arrays[f"act:{layer}"] = acts.astype(np.float32)
    return arrays


def save_circuit(circuit: Circuit, directory: str | os.PathLike) -> Path:
    """Write ``circuit`` to ``directory`` atomically (replacing an existing artifact).

    Returns:
        The artifact directory.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    write_npz(partial / ARRAYS_FILE, _arrays(circuit))
    doc = _to_json(circuit, _sha256(partial / ARRAYS_FILE))
    with open(partial / CIRCUIT_FILE, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(partial)
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    partial.rename(final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)
    return final


def _read_json(directory: Path) -> dict:
    path = directory / CIRCUIT_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a circuit artifact (no {CIRCUIT_FILE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "neurflow.circuit":
        raise ArtifactError(f"{path} is not a NeurFlow circuit")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema version {doc.get('schema_version')}; this NeurFlow reads version {SCHEMA_VERSION}")
    try:
        arrays = directory / doc["arrays"]["file"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} lacks the arrays entry") from exc
    if not arrays.is_file():
        raise ArtifactError(f"{directory} is incomplete: {arrays.name} is missing")
    if _sha256(arrays) != doc["arrays"]["sha256"]:
        raise ArtifactError(f"{arrays} does not match the checksum in {CIRCUIT_FILE} (corrupt or partially written)")
    return doc


def is_complete(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete, valid artifact of the current schema."""
    try:
        _read_json(Path(directory))
    except (ArtifactError, OSError, KeyError, TypeError):
        return False
    return True


def load_circuit(directory: str | os.PathLike) -> Circuit:
    """Read an artifact written by :func:`save_circuit`.

    Raises:
        ArtifactError: missing files, checksum mismatch, or another schema version.
    """
    directory = Path(directory)
    doc = _read_json(directory)
    try:
        return _from_json(doc, directory)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ArtifactError(f"{directory / CIRCUIT_FILE} does not follow schema version {SCHEMA_VERSION}: {type(exc).__name__}: {exc}") from exc


def _from_json(doc: dict, directory: Path) -> Circuit:
    with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    cfg = dict(doc["config"])
    cfg["scales"] = tuple(cfg["scales"])
    config = CircuitConfig(**cfg)
    grid = PatchGrid(arrays["patch_image"], arrays["patch_boxes"], arrays["patch_scales"], int(doc["data"]["image_size"]))
    targets, sgs, edges, groups = [], [], [], []
    neuron_acts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for entry in doc["layers"]:
        layer = entry["name"]
        empty = np.empty((0, 0))  # a layer without semantic groups / targets has no array
        sg_vectors = arrays[f"sg_vectors:{layer}"] if f"sg_vectors:{layer}" in arrays else empty
        importance = arrays[f"importance:{layer}"] if f"importance:{layer}" in arrays else empty
        sg_row, target_row = 0, 0
        for n in entry["neurons"]:
            neuron = NeuronRef(layer, int(n["channel"]))
            own = []
            for sg in n["semantic_groups"]:
                own.append(
                    SemanticGroup(
                        neuron=neuron,
                        index=int(sg["index"]),
                        patch_ids=tuple(sg["patch_ids"]),
                        activations=tuple(float(a) for a in sg["activations"]),
                        exemplar_ids=tuple(sg["exemplar_ids"]),
                        space=sg["space"],
                        vector=sg_vectors[sg_row],
                    )
                )
                sg_row += 1
            sgs.extend(own)
            core = n.get("core")
            if core is not None:
                ranked = core["neurons"]
                targets.append(
                    CoreNeurons(
                        target=neuron,
                        lower_layer=core["lower_layer"],
                        concept=tuple(core["concept"]),
                        core=tuple(int(r["channel"]) for r in ranked),
                        scores=tuple(float(r["score"]) for r in ranked),
                        signed=tuple(float(r["signed"]) for r in ranked),
                        all_scores=importance[target_row],
                    )
                )
                target_row += 1
                for j, sg in enumerate(own):
                    for r in ranked:
                        edges.append(HypertreeEdge(NeuronRef(core["lower_layer"], int(r["channel"])), neuron, sg.index, float(r["weights"][j]), float(r["importance"][j])))
        group_vectors = arrays[f"group_vectors:{layer}"] if f"group_vectors:{layer}" in arrays else empty
        for gi, g in enumerate(entry["groups"]):
            groups.append(
                NeuronGroup(
                    layer=layer,
                    index=int(g["index"]),
                    members=tuple(GroupMember(NeuronRef(layer, int(m["channel"])), int(m["semantic_group"])) for m in g["members"]),
                    patch_ids=tuple(g["patch_ids"]),
                    exemplar_ids=tuple(g["exemplar_ids"]),
                    vector=group_vectors[gi],
                )
            )
        if f"act:{layer}" in arrays:
            neuron_acts[layer] = (arrays[f"act_channels:{layer}"], arrays[f"act:{layer}"])
    group_edges = [
        GroupEdge(e["child"]["layer"], int(e["child"]["index"]), e["parent"]["layer"], int(e["parent"]["index"]), float(e["weight"]), int(e["n_edges"]))
        for e in doc["group_edges"]
    ]
    return Circuit(
        model_name=doc["model"]["name"],
        model_fingerprint=doc["model"]["fingerprint"],
        class_index=int(doc["class"]["index"]),
        class_name=doc["class"]["name"],
        layers=tuple(doc["model"]["layers"]),
        config=config,
        image_ids=tuple(doc["data"]["image_ids"]),
        data_fingerprint=doc["data"]["fingerprint"],
        patches=grid,
        targets=tuple(targets),
        semantic_groups=tuple(sgs),
        edges=tuple(edges),
        groups=tuple(groups),
        group_edges=tuple(group_edges),
        neuron_activations=neuron_acts,
        environment=dict(doc.get("environment", {})),
    )
