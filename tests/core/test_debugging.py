"""The debugger (neurflow.debugging): the bias score by hand, the permutation test on a
network whose answer is known by construction, its calibration under the null, the
Benjamini-Hochberg step against a hand computation, the verdicts, and the masking figures
of ``debug_circuit`` recomputed through forward hooks on the whole model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from neurflow.debugging import (
    ClassDebug,
    DebugConfig,
    GroupEvidence,
    Verdict,
    _margin,
    _masked_logits,
    _null,
    _random_masks,
    assign_verdicts,
    bias_score,
    debug_circuit,
    firing_masks,
    permutation_draws,
)
from neurflow.masking import knockout

from .nets import tiny_cnn, tiny_images


@pytest.mark.parametrize(
    ("fp", "rfp", "tp", "rtp", "expected"),
    [
        (1.0, 0.2, 0.0, 0.0, 1.0),  # removes every FP random sets leave, keeps every TP
        (0.6, 0.2, 0.0, 0.0, 0.5),  # half of the FPs random sets leave
        (0.6, 0.2, 0.6, 0.2, 0.5 * 0.5),  # and destroys half of the TPs random sets keep: the object
        (1.0, 0.0, 1.0, 0.0, 0.0),  # destroys the class: not a context
        (0.1, 0.3, 0.0, 0.0, 0.0),  # fewer FPs than random sets: clipped at 0
        (0.5, 1.0, 0.0, 0.0, 0.0),  # random sets flip everything: no evidence
        (0.8, 0.2, None, None, 0.75),  # no TPs: no collateral term
    ],
)
def test_bias_score_by_hand(fp, rfp, tp, rtp, expected):
    assert bias_score(fp, rfp, tp, rtp) == pytest.approx(expected, abs=1e-12)


def test_permutation_draws_reach_the_first_bh_threshold():
    cfg = DebugConfig()
    for m in (1, 30, 150):
        b = permutation_draws(m, cfg)
        assert 1 / (b + 1) <= cfg.alpha / m  # a lone discovery is reachable
    assert permutation_draws(10**6, cfg) == cfg.max_draws
    assert permutation_draws(1, DebugConfig(reference_draws=500)) == 500


def test_config_rejects_bad_values():
    for bad in ({"alpha": 0.0}, {"alpha": 1.0}, {"min_fp": 0}, {"reference_draws": 0}, {"max_draws": 5, "reference_draws": 10},
                {"min_exceed": 0}, {"fdr_scope": "model"}):
        with pytest.raises(ValueError):
            DebugConfig(**bad)


# ----------------------------------------------------------------------------- a known answer

C = 40  # channels at the masked layer


def _context_suffix(x: torch.Tensor) -> torch.Tensor:
    """Logits of a hand-built top: class 0 ("the class") wins iff channel 0 (a context) is on.

    ``x`` is ``[n, C, 1, 1]``; logit 0 = 2 * x[:, 0], logit 1 = 1 (a constant runner-up).
    """
    v = x.flatten(1)  # [n, C]
    return torch.stack([2.0 * v[:, 0], torch.ones_like(v[:, 0])], 1)  # [n, 2]


def _context_feats(n_tp: int, n_fp: int) -> torch.Tensor:
    feats = torch.rand(n_tp + n_fp, C, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    feats[:, 0] = 1.0  # every image shows the context: all are predicted class 0
    return feats


def test_margin_is_the_class_logit_minus_the_best_other():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0]])
    torch.testing.assert_close(_margin(logits, 0), torch.tensor([0.5, -4.0]))
    torch.testing.assert_close(_margin(logits, 1), torch.tensor([-2.0, 4.0]))


def test_permutation_p_value_of_a_planted_context_channel():
    """Masking channel 0 moves every FP's margin from +1 to -1; a random single channel does
    so only when it is channel 0 (probability 1/C), so the p-value of {0} estimates 1/C, and
    a group that moves nothing has p = 1."""
    n_tp, n_fp = 5, 12
    feats = _context_feats(n_tp, n_fp)
    logits = _context_suffix(feats)
    base_prob, base_margin = logits.softmax(1)[:, 0], _margin(logits[n_tp:], 0)
    assert torch.allclose(base_margin, torch.ones(n_fp, dtype=torch.float64))
    cfg = DebugConfig(reference_draws=50, max_draws=4000, min_exceed=20)
    hit = _null(_context_suffix, feats, n_tp, n_fp, 0, 2.0, base_prob, base_margin, np.random.default_rng(1), 1, 4000, cfg)
    print(f"p of the context channel {hit.p_value:.4f} after {hit.draws} draws (exact {1 / C:.4f})")
    assert 0.5 / C <= hit.p_value <= 2.0 / C
    assert hit.draws < 4000  # stopped at the 20th exceedance
    assert set(np.round(hit.fp_margin_drop, 12)) <= {0.0, 2.0}  # each draw moves all or none
    np.testing.assert_array_equal(hit.fp_flip == 1.0, hit.fp_margin_drop == 2.0)
    miss = _null(_context_suffix, feats, n_tp, n_fp, 0, 0.0, base_prob, base_margin, np.random.default_rng(1), 1, 4000, cfg)
    assert miss.p_value == 1.0 and miss.draws == cfg.min_exceed


def test_p_value_floor_when_no_random_set_does_as_well():
    n_tp, n_fp = 3, 10
    feats = _context_feats(n_tp, n_fp)
    logits = _context_suffix(feats)
    cfg = DebugConfig(reference_draws=10, max_draws=200)
    # a statistic no random set of size 1 reaches (the most is 2): p = 1 / (1 + draws)
    res = _null(_context_suffix, feats, n_tp, n_fp, 0, 2.5, logits.softmax(1)[:, 0], _margin(logits[n_tp:], 0), np.random.default_rng(0), 1, 200, cfg)
    assert res.p_value == pytest.approx(1 / 201) and res.draws == 200


def test_p_values_are_calibrated_under_the_null():
    """A group that is itself a random set: P(p <= a) <= a (up to three binomial SDs)."""
    torch.manual_seed(3)
    w = torch.randn(C, 3, dtype=torch.float64)

    def suffix(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ w  # [n, 3]

    feats = torch.rand(30, C, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    logits = suffix(feats)
    c = int(logits.argmax(1).mode().values)
    n_tp, n_fp = 10, 20
    base_prob, base_margin = logits.softmax(1)[:, c], _margin(logits[n_tp:], c)
    cfg = DebugConfig(reference_draws=20, max_draws=400, min_exceed=10)
    rng = np.random.default_rng(5)
    ps = []
    for _ in range(150):
        group = rng.choice(C, size=4, replace=False)
        masked = _masked_logits(suffix, feats, torch.ones(1, C, dtype=torch.float64).index_fill_(1, torch.as_tensor(group), 0.0), 1 << 20)[0]
        observed = float((base_margin - _margin(masked[n_tp:], c)).mean())
        ps.append(_null(suffix, feats, n_tp, n_fp, c, observed, base_prob, base_margin, rng, 4, 400, cfg).p_value)
    ps = np.array(ps)
    for a in (0.05, 0.2, 0.5):
        limit = a * len(ps) + 3 * np.sqrt(len(ps) * a * (1 - a))
        print(f"fraction of null p-values <= {a}: {np.mean(ps <= a):.3f}")
        assert np.sum(ps <= a) <= limit


def test_batched_masks_equal_one_masked_forward_each():
    model = tiny_cnn().eval()
    images = tiny_images(seed=2, n=7)
    from neurflow.segments import split_model

    split = split_model(model, ["fc", "c3", "c2"])
    feats = split.extractor(["c2"])(images)["c2"]
    seg_c3, seg_fc = split.segment("c3"), split.segment("fc")
    masks = _random_masks(np.random.default_rng(0), 16, 5, 9, torch.device("cpu")).double()
    batched = _masked_logits(lambda x: seg_fc(seg_c3(x)), feats, masks, batch_bytes=3 * feats[0].numel() * 8 * 7)  # 3 masks per batch
    assert batched.shape == (9, 7, 4)
    with torch.no_grad():
        for b in range(9):
            dropped = (masks[b] == 0).nonzero().flatten().tolist()
            assert len(dropped) == 5
            with knockout(model, {"c2": dropped}):
                torch.testing.assert_close(batched[b], model(images), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- verdicts


def _evidence(layer: str, index: int, p: float, score: float, part: bool | None = None) -> GroupEvidence:
    return GroupEvidence(
        layer=layer, index=index, channels=(index,), tp_metric=0.5, fp_metric=0.4, user_metric=None, tp_prob_drop=0.1,
        tp_logit_drop=0.2, fp_flip=0.5, tp_flip=0.0, random_tp_prob_drop_mean=0.0, random_tp_prob_drop_std=0.1,
        random_fp_flip_mean=0.1, random_fp_flip_std=0.1, random_tp_flip_mean=0.0, fp_margin_drop=1.0, random_fp_margin_drop_mean=0.1,
        effect_fp_flip=0.4, z_fp_flip=4.0,
        p_fp_flip=p, draws=100, z_tp_drop=1.0, collateral_tp=0.0, bias_score=score, part_of_class=part,
    )


def _bh(ps: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values, by hand: min over j >= i of m p_(j) / j."""
    m = len(ps)
    order = np.argsort(ps)
    adjusted = np.minimum.accumulate((ps[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def test_benjamini_hochberg_over_the_run_and_per_class():
    ps_a, ps_b = [0.001, 0.02, 0.04, 0.3], [0.004, 0.5, 0.03]
    a = ClassDebug(0, 10, 12, 0, tuple(_evidence("l1", i, p, 0.1 * i) for i, p in enumerate(ps_a)))
    b = ClassDebug(1, 10, 15, 0, tuple(_evidence("l1", i, p, 0.2) for i, p in enumerate(ps_b)))
    run = assign_verdicts([a, b])
    q_run = _bh(np.array(ps_a + ps_b))
    got = {(r.class_index, g.index): g.q_value for r in run for g in r.groups}
    for k, (cls, i) in enumerate([(0, i) for i in range(4)] + [(1, i) for i in range(3)]):
        assert got[(cls, i)] == pytest.approx(q_run[k], abs=1e-12)
    assert all(r.n_tests == 7 for r in run)
    cfg = DebugConfig(fdr_scope="class")
    per_class = assign_verdicts([replace(a, config=cfg), replace(b, config=cfg)])
    q_a = _bh(np.array(ps_a))
    assert sorted(g.q_value for g in per_class[0].groups) == pytest.approx(sorted(q_a), abs=1e-12)
    assert [r.n_tests for r in per_class] == [4, 3]
    with pytest.raises(ValueError, match="share alpha"):
        assign_verdicts([a, replace(b, config=cfg)])


def test_verdicts_and_ranking():
    groups = (
        _evidence("l2", 0, 0.001, 0.3, part=False),  # causes, not the class's own: spurious
        _evidence("l2", 1, 0.002, 0.9, part=True),  # causes, the class's object
        _evidence("l1", 0, 0.003, 0.5, part=None),  # causes, no label
        _evidence("l1", 1, 0.6, 0.95, part=False),  # a high score but not significant
    )
    [r] = assign_verdicts([ClassDebug(3, 20, 20, 0, groups)])
    verdict = {(g.layer, g.index): g.verdict for g in r.groups}
    assert verdict == {("l2", 0): Verdict.SPURIOUS, ("l2", 1): Verdict.PART_OF_CLASS, ("l1", 0): Verdict.UNKNOWN, ("l1", 1): Verdict.NOT_SIGNIFICANT}
    assert [(g.layer, g.index) for g in r.groups] == [("l2", 1), ("l1", 0), ("l2", 0), ("l1", 1)]  # significant first, by score
    assert r.verdict == Verdict.CLASS_BIASED
    [r2] = assign_verdicts([ClassDebug(3, 20, 20, 0, groups[1:])])
    assert r2.verdict == Verdict.CLASS_UNKNOWN
    [r3] = assign_verdicts([ClassDebug(3, 20, 20, 0, (groups[1], groups[3]))])
    assert r3.verdict == Verdict.CLASS_CAUSES
    [r4] = assign_verdicts([ClassDebug(3, 20, 20, 0, (groups[3],))])
    assert r4.verdict == Verdict.CLASS_NONE and not r4.groups[0].causes_fp


# ----------------------------------------------------------------------------- on a real circuit


def test_too_few_false_positives_is_insufficient_evidence(tiny_circuit):
    model = tiny_cnn().double().eval()
    images = tiny_images(seed=5, n=10)
    result = debug_circuit(model, tiny_circuit, images[:6], images[6:], config=DebugConfig(min_fp=5))
    assert result.verdict == Verdict.INSUFFICIENT and result.groups == () and result.n_fp == 4
    [same] = assign_verdicts([result])
    assert same == result


def test_masking_figures_equal_a_knockout_of_the_whole_model(tiny_circuit):
    """debug_circuit masks at a group's layer and runs only the segments above it; a forward
    hook zeroing the same channels in the whole model must give the same drops and flips."""
    model = tiny_cnn().double().eval()  # the weights the circuit was built from
    images = tiny_images(seed=5, n=10)
    tp, fp = images[:6], images[6:]
    c = tiny_circuit.class_index
    cfg = DebugConfig(min_fp=1, reference_draws=3, max_draws=3, top_n=4)
    result = debug_circuit(model, tiny_circuit, tp, fp, fp_classes=[0, 1, 1, 3], config=cfg)
    assert len(result.groups) == sum(1 for g in tiny_circuit.groups if g.layer != tiny_circuit.layers[0])
    assert result.n_tests == len(result.groups)
    with torch.no_grad():
        base = model(images)
    for e in result.groups:
        with torch.no_grad(), knockout(model, {e.layer: e.channels}):
            masked = model(images)
        drop = base[:, c] - masked[:, c]
        prob_drop = base.softmax(1)[:, c] - masked.softmax(1)[:, c]
        assert e.tp_logit_drop == pytest.approx(float(drop[:6].mean()), abs=1e-10)
        assert e.tp_prob_drop == pytest.approx(float(prob_drop[:6].mean()), abs=1e-10)
        flipped = (masked[6:].argmax(1) != c).numpy()
        assert e.fp_flip == pytest.approx(float(flipped.mean()), abs=1e-12)
        assert e.tp_flip == pytest.approx(float((masked[:6].argmax(1) != c).double().mean()), abs=1e-12)
        order = np.argsort(-drop.numpy(), kind="stable")[:4]
        assert [i for i, _ in e.top_images] == order.tolist()
        np.testing.assert_allclose([d for _, d in e.top_images], drop.numpy()[order], atol=1e-10)
        assert e.effect_fp_flip == pytest.approx(e.fp_flip - e.random_fp_flip_mean, abs=1e-12)
        assert e.p_fp_flip * 4 == pytest.approx(round(e.p_fp_flip * 4))  # (1 + #draws at least as strong) / (1 + 3)
        margin = lambda z: z[:, c] - torch.cat([z[:, :c], z[:, c + 1 :]], 1).max(1).values  # noqa: E731
        assert e.fp_margin_drop == pytest.approx(float((margin(base[6:]) - margin(masked[6:])).mean()), abs=1e-10)
        assert e.bias_score == pytest.approx(bias_score(e.fp_flip, e.random_fp_flip_mean, e.tp_flip, e.random_tp_flip_mean))
        truth = np.array([0, 1, 1, 3])
        assert {k: n for k, n, _ in e.confusers} == {int(k): int(flipped[truth == k].sum()) for k in np.unique(truth) if flipped[truth == k].any()}
    [ranked] = assign_verdicts([result])
    assert sorted((g.layer, g.index) for g in ranked.groups) == sorted((g.layer, g.index) for g in result.groups)
    assert all(g.q_value is not None and g.q_value >= g.p_fp_flip - 1e-12 for g in ranked.groups)


def test_firing_masks_mark_where_the_group_fires():
    """A 1x1 identity layer: a channel's map is its input, so the mask of a group is where its
    channels are bright (at least half the patch's peak), upsampled to the patch's pixels."""
    from collections import OrderedDict

    from torch import nn

    from neurflow.segments import split_model

    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = nn.Sequential(OrderedDict(c=conv, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(3, 2))).double().eval()
    split = split_model(model, ["fc", "c"])
    x = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    x[0, 1, 2:5, 3:7] = 1.0  # channel 1 bright in a 3x4 block of patch 0
    x[0, 1, 0, 0] = 0.4  # below half the peak
    x[1, 2, :, :4] = 2.0  # channel 2 on the left half of patch 1; channel 1 silent there
    m = firing_masks(split, "c", [1], x)
    assert m.shape == (2, 8, 8) and m[0, 2:5, 3:7].all() and m[0].sum() == 12 and not m[1].any()
    both = firing_masks(split, "c", [1, 2], x)
    assert both[1, :, :4].all() and not both[1, :, 4:].any()
    assert firing_masks(split, "fc", [0], x).all()  # no spatial axes: the whole patch
