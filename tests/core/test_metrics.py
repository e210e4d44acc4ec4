"""Metrics (neurflow.metrics): concept overlap L(S, a), the group-concept metric M, knock-out concepts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurflow import concept_overlap, core_jaccard, group_concept_metric, knockout_concepts, make_patch_grid, split_model
from neurflow.activations import patch_activations, top_k

from .nets import tiny_cnn, tiny_images


def test_concept_overlap_values():
    assert concept_overlap([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    assert concept_overlap([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert concept_overlap(np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])) == 0.0
    assert concept_overlap([7, 8, 9], [9]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="the concept V_a is empty"):
        concept_overlap([], [1, 2])


def _by_hand(row, maxima, eps=1e-6):
    logs = [math.log(max(a, 0.0) / (abs(m) + eps) + eps) for a, m in zip(row, maxima)]
    return math.exp(sum(logs) / len(logs))


def test_group_concept_metric_equals_the_hand_computation():
    acts = np.array([[2.0, 3.0, 1.0], [4.0, 0.5, 2.0], [-1.0, 6.0, 2.0], [8.0, 12.0, 4.0]])
    maxima = np.array([4.0, 6.0, 2.0])
    got = group_concept_metric(acts, maxima)
    assert got.shape == (4,)
    assert np.allclose(got, [_by_hand(r, maxima) for r in acts.tolist()], rtol=1e-12, atol=0)
    assert got[0] == pytest.approx(0.5, rel=1e-5)  # every neuron at half its maximum
    assert got[3] == pytest.approx(2.0, rel=1e-5)  # above the maximum over D: above 1
    # torch tensors are accepted too
    assert np.allclose(group_concept_metric(torch.tensor(acts), torch.tensor(maxima)), got, rtol=1e-15)


def test_group_concept_metric_extremes():
    maxima = np.array([4.0, 6.0, 2.0])
    one_silent = group_concept_metric(np.array([[0.0, 6.0, 2.0], [-3.0, 6.0, 2.0]]), maxima)
    # (eps * 1 * 1) ** (1/3), with eps = 1e-6: a silent neuron pulls the geometric mean to ~0
    assert np.allclose(one_silent, (1e-6) ** (1 / 3), rtol=1e-5)
    assert np.all(one_silent < 0.0101)
    at_max = group_concept_metric(maxima[None, :], maxima)
    assert at_max[0] == pytest.approx(1.0, abs=1e-6) and at_max[0] <= 1.0 + 1e-6
    # a single-neuron group: the metric is just the relative activation
    assert group_concept_metric(np.array([[1.5]]), np.array([3.0]))[0] == pytest.approx(0.5, rel=1e-5)
    assert group_concept_metric(np.array([[0.0]]), np.array([3.0]))[0] < 1e-5


def test_group_concept_metric_errors():
    with pytest.raises(ValueError, match=r"activations must be \[n, 3\], got \(2, 2\)"):
        group_concept_metric(np.ones((2, 2)), np.ones(3))
    with pytest.raises(ValueError, match=r"activations must be \[n, 3\], got \(3,\)"):
        group_concept_metric(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="the group has no neurons"):
        group_concept_metric(np.ones((2, 0)), np.ones(0))


@pytest.fixture(scope="module")
def setup():
    model = tiny_cnn()
    images = tiny_images(n=2, size=16)
    return model, split_model(model, ["fc", "c3", "c2", "c1"]), images, make_patch_grid(2, 16)


def test_knockout_concepts_without_knockout_is_the_concept(setup):
    model, split, images, grid = setup
    acts = patch_activations(split, images, grid, ["c2"])["c2"]
    got = knockout_concepts(model, split, images, grid, "c2", [3, 0, 3], {}, k=7)
    assert [g.tolist() for g in got] == [top_k(acts[:, t], 7).tolist() for t in (3, 0, 3)]


def test_knocking_out_every_input_channel_leaves_only_the_bias(setup):
    model, split, images, grid = setup
    got = knockout_concepts(model, split, images, grid, "c2", [0, 5], {"c1": range(8)}, k=4, batch_size=9)
    # c2 is constant over D: top_k breaks the ties by the lower index
    assert [g.tolist() for g in got] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    partly = knockout_concepts(model, split, images, grid, "c2", [0], {"c1": [0, 1]}, k=10)[0]
    base = knockout_concepts(model, split, images, grid, "c2", [0], {}, k=10)[0]
    assert 0.0 <= concept_overlap(base, partly) <= 1.0
    for module in model.modules():
        assert not module._forward_hooks


def test_knocking_out_a_layer_the_split_traced_through_is_not_silent():
    model = tiny_cnn()
    images = tiny_images(n=2, size=16)
    grid = make_patch_grid(2, 16)
    split = split_model(model, ["fc", "c2"])  # c1 is inlined into c1.0, c1.1 in the trace
    base = knockout_concepts(model, split, images, grid, "c2", [0], {}, k=5)[0]
    try:
        knocked = knockout_concepts(model, split, images, grid, "c2", [0], {"c1": range(8)}, k=5)[0]
    except ValueError:
        return  # refusing is fine too
    assert knocked.tolist() == [0, 1, 2, 3, 4]  # c2 constant over D, as when c1 is a split layer
    assert knocked.tolist() != base.tolist()


# -- agreement of two circuits' core neurons ----------------------------------------------


def _cores(*rows):
    """A stand-in circuit: ``rows`` of (target layer, target channel, lower layer, core)."""
    from types import SimpleNamespace

    from neurflow import NeuronRef

    return SimpleNamespace(targets=[SimpleNamespace(target=NeuronRef(layer, c), lower_layer=low, core=core) for layer, c, low, core in rows])


def test_core_jaccard_pools_the_layers_core_sets():
    a = _cores(("fc", 0, "c3", (1, 2)), ("c3", 1, "c2", (5,)), ("c3", 2, "c2", (5, 6)))
    b = _cores(("fc", 0, "c3", (1, 3)), ("c3", 1, "c2", (5, 6)), ("c3", 3, "c2", (6,)))
    # layers' sets: a = {c3:1, c3:2, c2:5, c2:6}, b = {c3:1, c3:3, c2:5, c2:6}: 3 shared of 5
    assert core_jaccard(a, b) == pytest.approx(3 / 5)
    # (target, core) pairs: a has 5, b has 5; shared fc:0->1, c3:1->5: 2 of 8
    assert core_jaccard(a, b, per_target=True) == pytest.approx(2 / 8)
    assert core_jaccard(a, a) == core_jaccard(a, a, per_target=True) == 1.0
    # a channel of the same number in another layer is another neuron
    assert core_jaccard(_cores(("fc", 0, "c3", (1,))), _cores(("fc", 0, "c2", (1,)))) == 0.0
    assert core_jaccard(_cores(), _cores()) == 1.0


def test_core_jaccard_of_real_circuits(tiny_circuit):
    assert core_jaccard(tiny_circuit, tiny_circuit) == 1.0
    # drop the deepest transition's targets: what they found is missing from the pooled set
    deepest = tiny_circuit.layers[-1]
    shallow = type("C", (), {"targets": [t for t in tiny_circuit.targets if t.lower_layer != deepest]})()
    full = {(t.lower_layer, s) for t in tiny_circuit.targets for s in t.core}
    kept = {(t.lower_layer, s) for t in shallow.targets for s in t.core}
    assert 0 < len(kept) < len(full)
    assert core_jaccard(tiny_circuit, shallow) == pytest.approx(len(kept) / len(full))
