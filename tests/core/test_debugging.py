"""The bias score (neurflow.debugging.bias_score): each factor, by hand."""

from __future__ import annotations

import pytest

from neurflow.debugging import BIAS_THRESHOLD, bias_score


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
