"""The debugger (neurflow.debugging): the bias score's factors by hand, and the masking
figures of ``debug_circuit`` recomputed through forward hooks on the whole model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurflow.debugging import BIAS_THRESHOLD, bias_score, debug_circuit
from neurflow.masking import knockout

from .nets import tiny_cnn, tiny_images


@pytest.mark.parametrize(
    ("tp", "fp", "z", "shared", "expected"),
    [
        (0.5, 0.25, 1.5, None, 0.5 * 0.5 * 0.75),  # half the activity kept, z half of z_ref, no atlas
        (0.4, 0.4, 3.0, None, 0.75),  # a context: as active on FPs as on TPs, fully causal
        (0.4, 0.8, 6.0, 1.0, 1.0),  # more active on FPs: a is clipped at 1; shared by every class
        (0.4, 0.4, 3.0, 0.0, 0.5),  # specific to the class: sharing halves the score
        (0.5, 0.05, 4.0, 0.5, 0.1 * 1.0 * 0.75),  # an object part: silent on FPs
        (0.5, 0.5, -2.0, None, 0.0),  # masking it removes fewer FPs than random masks
        (0.0, 0.3, 3.0, None, 0.0),  # never active on the class's own images
    ],
)
def test_bias_score_factors(tp, fp, z, shared, expected):
    assert bias_score(tp, fp, z, shared) == pytest.approx(expected, abs=1e-12)


def test_no_false_positives_means_no_bias():
    assert bias_score(0.5, None, None, 0.3) == 0.0
    assert bias_score(None, 0.5, 2.0, None) == 0.0


def test_threshold_separates_a_causal_context_from_an_object_part():
    context = bias_score(0.52, 0.35, 3.5, None)
    part = bias_score(0.52, 0.10, 3.5, None)
    weak = bias_score(0.52, 0.35, 0.5, None)
    assert context >= BIAS_THRESHOLD > part
    assert weak < BIAS_THRESHOLD


def test_the_significance_gate():
    """c is zeroed when random sets flip as many false positives often enough (p > alpha)."""
    strong = bias_score(0.4, 0.4, 3.0, None, p_fp_flip=1 / 21)
    assert strong == pytest.approx(0.75)
    assert bias_score(0.4, 0.4, 3.0, None, p_fp_flip=3 / 21) == 0.0
    assert bias_score(0.4, 0.4, 3.0, None, p_fp_flip=3 / 21, alpha=0.2) == pytest.approx(0.75)
    assert bias_score(0.4, 0.4, 3.0, None) == pytest.approx(0.75)  # no p-value given: no gate


def test_masking_figures_equal_a_knockout_of_the_whole_model(tiny_circuit):
    """debug_circuit masks at a group's layer and runs only the segments above it; a forward
    hook zeroing the same channels in the whole model must give the same drops and flips."""
    model = tiny_cnn().double().eval()  # the weights the circuit was built from
    images = tiny_images(seed=5, n=10)
    tp, fp = images[:6], images[6:]
    c = tiny_circuit.class_index
    result = debug_circuit(model, tiny_circuit, tp, fp, draws=3, top_n=4)
    assert len(result.groups) == sum(1 for g in tiny_circuit.groups if g.layer != tiny_circuit.layers[0])
    with torch.no_grad():
        base = model(images)
    for e in result.groups:
        with torch.no_grad(), knockout(model, {e.layer: e.channels}):
            masked = model(images)
        drop = base[:, c] - masked[:, c]
        prob_drop = base.softmax(1)[:, c] - masked.softmax(1)[:, c]
        assert e.tp_logit_drop == pytest.approx(float(drop[:6].mean()), abs=1e-10)
        assert e.tp_prob_drop == pytest.approx(float(prob_drop[:6].mean()), abs=1e-10)
        assert e.fp_flip == pytest.approx(float((masked[6:].argmax(1) != c).double().mean()), abs=1e-12)
        assert e.tp_flip == pytest.approx(float((masked[:6].argmax(1) != c).double().mean()), abs=1e-12)
        order = np.argsort(-drop.numpy(), kind="stable")[:4]
        assert [i for i, _ in e.top_images] == order.tolist()
        np.testing.assert_allclose([d for _, d in e.top_images], drop.numpy()[order], atol=1e-10)
        assert e.effect_fp_flip == pytest.approx(e.fp_flip - e.random_fp_flip_mean, abs=1e-12)
        assert e.p_fp_flip * 4 == pytest.approx(round(e.p_fp_flip * 4))  # (1 + #draws at least as strong) / (1 + 3)
    scores = [e.bias_score for e in result.groups]
    assert scores == sorted(scores, reverse=True)
