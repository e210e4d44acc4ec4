"""Resumable circuit builds: the hypertree's state after each finished transition, on disk.

A paper-depth circuit has ten transitions (logit -> layer4.2 -> ... -> layer2.3); a build
killed in transition 9 should not redo the first eight. After each transition the build
hands its state (the core neurons, semantic groups and Eq. 4 edges found so far and the
next layer's targets) to a :class:`TransitionStore`, which writes it atomically beside the
artifact: ``state.npz`` (the float arrays) and ``state.json`` (the structure, the number of
finished transitions, a key naming the inputs, and the sha256 of ``state.npz``), each
written to a temporary file, fsynced and renamed. A store whose key differs (other weights,
images or settings) or whose checksum fails is ignored. Values are stored exactly (JSON
floats round-trip, arrays keep their dtype), so a resumed build gives the same artifact,
byte for byte, as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import write_json_atomic, write_npz
from .circuit import CoreNeurons, HypertreeEdge, NeuronRef, SemanticGroup

__all__ = ["HypertreeState", "TransitionStore"]

STATE_JSON, STATE_NPZ = "state.json", "state.npz"
_VERSION = 1


@dataclass(frozen=True)
class HypertreeState:
    """The hypertree after ``done`` transitions (logit layer first).

    Attributes:
        done: finished transitions.
        targets: the target channels of the next transition's upper layer.
        cores / semantic_groups / edges: what the finished transitions found.
    """

    done: int
    targets: tuple[int, ...]
    cores: tuple[CoreNeurons, ...]
    semantic_groups: tuple[SemanticGroup, ...]
    edges: tuple[HypertreeEdge, ...]


def _ref(n: NeuronRef) -> list:
    return [n.layer, n.channel]


def _ragged(name: str, rows: list[np.ndarray]) -> dict[str, np.ndarray]:
    flat = np.concatenate([r.astype(np.float32).ravel() for r in rows]) if rows else np.zeros(0, np.float32)
    return {f"{name}:flat": flat, f"{name}:len": np.array([r.size for r in rows], dtype=np.int64)}


def _unragged(arrays: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    ends = np.cumsum(arrays[f"{name}:len"])
    return np.split(arrays[f"{name}:flat"], ends[:-1]) if len(ends) else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TransitionStore:
    """The state of one class's build, kept in ``directory`` under ``key``.

    Args:
        directory: a folder of its own (created on the first save).
        key: names the build's inputs (model and data fingerprints, layers, settings); a
            stored state with another key is never resumed.
    """

    def __init__(self, directory: str | os.PathLike, key: str) -> None:
        self.directory, self.key = Path(directory), key

    def save(self, state: HypertreeState) -> None:
        """Write ``state`` atomically (an earlier state stays valid until the rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = {  # ragged rows (layers differ in width) as one flat array and the row lengths
            **_ragged("all_scores", [c.all_scores for c in state.cores]),
            **_ragged("sg_vectors", [sg.vector for sg in state.semantic_groups]),
        }
        tmp_npz = self.directory / (STATE_NPZ + ".tmp")
        write_npz(tmp_npz, arrays)
        digest = _sha256(tmp_npz)
        doc = {
            "version": _VERSION,
            "key": self.key,
            "done": state.done,
            "targets": list(state.targets),
            "cores": [
                {"target": _ref(c.target), "lower_layer": c.lower_layer, "concept": list(c.concept), "core": list(c.core),
                 "scores": list(c.scores), "signed": list(c.signed)}
                for c in state.cores
            ],
            "semantic_groups": [
                {"neuron": _ref(sg.neuron), "index": sg.index, "patch_ids": list(sg.patch_ids), "activations": list(sg.activations),
                 "exemplar_ids": list(sg.exemplar_ids), "space": sg.space}
                for sg in state.semantic_groups
            ],
            "edges": [[*_ref(e.child), *_ref(e.parent), e.group, e.weight, e.importance] for e in state.edges],
            "npz_sha256": digest,
        }
        os.replace(tmp_npz, self.directory / STATE_NPZ)
        write_json_atomic(self.directory / STATE_JSON, doc, indent=None)

    def load(self) -> HypertreeState | None:
        """The stored state, or None (none, another key, or a checksum that fails)."""
        path = self.directory / STATE_JSON
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if doc.get("version") != _VERSION or doc.get("key") != self.key:
            return None
        npz = self.directory / STATE_NPZ
        if not npz.is_file() or _sha256(npz) != doc.get("npz_sha256"):
            return None
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        scores, vectors = _unragged(arrays, "all_scores"), _unragged(arrays, "sg_vectors")
        cores = tuple(
            CoreNeurons(
                target=NeuronRef(c["target"][0], int(c["target"][1])), lower_layer=c["lower_layer"], concept=tuple(c["concept"]),
                core=tuple(c["core"]), scores=tuple(c["scores"]), signed=tuple(c["signed"]),
                all_scores=scores[i],
            )
            for i, c in enumerate(doc["cores"])
        )
        sgs = tuple(
            SemanticGroup(
                neuron=NeuronRef(s["neuron"][0], int(s["neuron"][1])), index=int(s["index"]), patch_ids=tuple(s["patch_ids"]),
                activations=tuple(s["activations"]), exemplar_ids=tuple(s["exemplar_ids"]), space=s["space"],
                vector=vectors[i],
            )
            for i, s in enumerate(doc["semantic_groups"])
        )
        edges = tuple(HypertreeEdge(NeuronRef(e[0], int(e[1])), NeuronRef(e[2], int(e[3])), int(e[4]), float(e[5]), float(e[6])) for e in doc["edges"])
        return HypertreeState(int(doc["done"]), tuple(int(t) for t in doc["targets"]), cores, sgs, edges)

    def clear(self) -> None:
        """Remove the stored state (after the artifact is written)."""
        shutil.rmtree(self.directory, ignore_errors=True)
