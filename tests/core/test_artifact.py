"""The on-disk artifact (neurflow.artifact): round trip, determinism, readability, corruption."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from neurflow import SCHEMA_VERSION, ArtifactError, is_complete, load_circuit, save_circuit
from neurflow.artifact import ARRAYS_FILE, CIRCUIT_FILE

from .nets import build_tiny


@pytest.fixture
def saved(tiny_circuit, tmp_path):
    return save_circuit(tiny_circuit, tmp_path / "art" / "tiny-2")


def _assert_same(a, b):
    assert a == b
    for x, y in zip(a.targets, b.targets):
        assert x.target == y.target and np.array_equal(x.all_scores, y.all_scores)
        assert x.all_scores.dtype == y.all_scores.dtype
    for x, y in zip(a.semantic_groups, b.semantic_groups):
        assert (x.neuron, x.index) == (y.neuron, y.index) and np.array_equal(x.vector, y.vector)
    for x, y in zip(a.groups, b.groups):
        assert (x.layer, x.index) == (y.layer, y.index) and np.array_equal(x.vector, y.vector)
    assert a.neuron_activations.keys() == b.neuron_activations.keys()
    for layer, (channels, acts) in a.neuron_activations.items():
        assert np.array_equal(channels, b.neuron_activations[layer][0])
        assert np.array_equal(acts, b.neuron_activations[layer][1])
    assert a.environment == b.environment


def test_round_trip(tiny_circuit, saved):
    assert saved.name == "tiny-2" and is_complete(saved)
    assert sorted(p.name for p in saved.iterdir()) == [ARRAYS_FILE, CIRCUIT_FILE]
    loaded = load_circuit(saved)
    _assert_same(tiny_circuit, loaded)
    assert loaded.config == tiny_circuit.config and loaded.patches == tiny_circuit.patches
    assert loaded.root == tiny_circuit.root
    # and a second trip is a fixed point
    again = load_circuit(save_circuit(loaded, saved.parent / "again"))
    _assert_same(loaded, again)


def test_same_inputs_give_byte_identical_files(tiny_circuit, tmp_path):
    a = save_circuit(tiny_circuit, tmp_path / "a")
    b = save_circuit(build_tiny(), tmp_path / "b")
    for name in (CIRCUIT_FILE, ARRAYS_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_json_is_plain_and_lists_cores_in_rank_order(tiny_circuit, saved):
    doc = json.loads((saved / CIRCUIT_FILE).read_text(encoding="utf-8"))
    c = tiny_circuit
    assert doc["schema_version"] == SCHEMA_VERSION and doc["kind"] == "neurflow.circuit"
    assert doc["model"]["layers"] == list(c.layers) and doc["class"] == {"index": 2, "name": "two"}
    layers = {entry["name"]: entry for entry in doc["layers"]}
    assert [e["name"] for e in doc["layers"]] == list(c.layers)
    assert [e["lower"] for e in doc["layers"]] == [*c.layers[1:], None]
    for target in c.targets:
        entry = next(n for n in layers[target.target.layer]["neurons"] if n["channel"] == target.target.channel)
        core = entry["core"]
        assert core["lower_layer"] == target.lower_layer and core["concept"] == list(target.concept)
        assert [r["rank"] for r in core["neurons"]] == list(range(len(target.core)))
        assert [r["channel"] for r in core["neurons"]] == list(target.core)
        assert [r["score"] for r in core["neurons"]] == list(target.scores)
        assert [r["signed"] for r in core["neurons"]] == list(target.signed)
        n_groups = len(c.semantic_groups_of(target.target))
        assert len(entry["semantic_groups"]) == n_groups
        assert all(len(r["weights"]) == len(r["importance"]) == n_groups for r in core["neurons"])
    # every patch the JSON mentions is described in it
    mentioned = {p for e in doc["layers"] for n in e["neurons"] for sg in n["semantic_groups"] for p in sg["patch_ids"]}
    assert {int(p) for p in doc["patches"]} >= mentioned
    some = min(mentioned)
    assert doc["patches"][str(some)]["box"] == c.patches.boxes[some].tolist()
    assert len(doc["group_edges"]) == len(c.group_edges)


def test_corrupt_arrays_are_detected(tiny_circuit, saved):
    path = saved / ARRAYS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not is_complete(saved)
    with pytest.raises(ArtifactError, match="does not match the checksum in circuit.json"):
        load_circuit(saved)


def test_missing_files(saved, tmp_path):
    (saved / ARRAYS_FILE).unlink()
    assert not is_complete(saved)
    with pytest.raises(ArtifactError, match="is incomplete: arrays.npz is missing"):
        load_circuit(saved)
    (saved / CIRCUIT_FILE).unlink()
    with pytest.raises(ArtifactError, match="is not a circuit artifact \\(no circuit.json\\)"):
        load_circuit(saved)
    with pytest.raises(ArtifactError, match="no circuit.json"):
        load_circuit(tmp_path / "never-written")
    assert not is_complete(tmp_path / "never-written")


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), f"has schema version {SCHEMA_VERSION + 1}; this NeurFlow reads version {SCHEMA_VERSION}"),
        (lambda d: d.pop("schema_version"), "has schema version None"),
        (lambda d: d.update(kind="something.else"), "is not a NeurFlow circuit"),
    ],
)
def test_wrong_document(saved, edit, message):
    path = saved / CIRCUIT_FILE
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    assert not is_complete(saved)
    with pytest.raises(ArtifactError, match=message):
        load_circuit(saved)


def test_invalid_json(saved):
    (saved / CIRCUIT_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        load_circuit(saved)
    assert issubclass(ArtifactError, ValueError)


def test_partial_leftover_is_not_complete_and_is_replaced(tiny_circuit, tmp_path):
    final = tmp_path / "tiny-2"
    partial = tmp_path / "tiny-2.partial"
    partial.mkdir()
    (partial / ARRAYS_FILE).write_bytes(b"half a zip")  # a build killed mid-write
    assert not is_complete(final) and not is_complete(partial)
    save_circuit(tiny_circuit, final)
    assert is_complete(final) and not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-2"]


def test_save_over_an_existing_artifact_replaces_it(tiny_circuit, saved):
    other = dataclasses.replace(tiny_circuit, class_name="renamed")
    assert save_circuit(other, saved) == saved
    assert load_circuit(saved).class_name == "renamed"
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]  # no .old / .partial left


def test_save_to_a_copy_elsewhere_loads(saved, tmp_path):
    moved = shutil.copytree(saved, tmp_path / "moved")
    assert is_complete(moved) and load_circuit(moved) == load_circuit(saved)


def test_all_scores_follow_their_target_whatever_the_order(tiny_circuit, tmp_path):
    shuffled = dataclasses.replace(tiny_circuit, targets=tuple(reversed(tiny_circuit.targets)))
    loaded = load_circuit(save_circuit(shuffled, tmp_path / "shuffled"))
    by_target = {t.target: t.all_scores for t in tiny_circuit.targets}
    for t in loaded.targets:
        assert np.array_equal(t.all_scores, by_target[t.target]), t.target
