"""The Section 4 experiments (neurflow.evaluation) on a tiny CNN trained on a planted task.

The task: four classes of 16x16 images, each a periodic pattern of one orientation
(horizontal, vertical, checkerboard, diagonal) in a random colour under Gaussian noise. A
three-conv CNN learns it to 100% validation accuracy in a few dozen Adam steps, so its
class logits read a few orientation detectors: the structure the paper's claims are about.
The claims are asserted as the paper states them (Figures 4-6); the measured values are
printed with ``pytest -s``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurflow import CircuitConfig, build_circuit, knockout_concepts, select_class_images, split_model
from neurflow.evaluation import (
    EvaluationConfig,
    EvaluationInputError,
    FidelityCell,
    FidelityResult,
    OptimalityResult,
    circuit_neurons,
    correlation,
    evaluate_circuit,
    knocked_concepts,
    optimality,
    summarize,
    to_jsonable,
    verify_inputs,
)

SIZE = 16
LAYERS = ("fc", "c3", "c2", "c1")
CLASS = 0
BUILD = CircuitConfig(tau=4, k=8, steps=8, scales=(1.0, 0.5), max_semantic_groups=3, max_neuron_groups=4)
EVAL = EvaluationConfig(samples=3, random_sets=30, taus=(2, 4), fidelity_draws=4, max_cardinality=6, combinations=16, seed=0)


@contextlib.contextmanager
def one_thread():
    """Tiny convolutions run fastest on one thread (and do not fight other test workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pattern_images(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[4n, 3, 16, 16]`` images and their labels: one oriented pattern per class."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images, labels = [], []
    for c in range(4):
        for _ in range(n_per_class):
            ph = int(torch.randint(0, 4, (1,), generator=g))
            pat = {
                0: (yy + ph) // 2 % 2,
                1: (xx + ph) // 2 % 2,
                2: ((xx + ph) // 2 + (yy + ph) // 2) % 2,
                3: ((xx + yy + ph) // 2) % 2,
            }[c].float()
            colour = torch.rand(3, generator=g) * 0.5 + 0.5
            images.append(pat[None] * colour[:, None, None] + 0.3 * torch.randn(3, SIZE, SIZE, generator=g))
            labels.append(c)
    return torch.stack(images), torch.tensor(labels)


def pattern_cnn() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            c1=nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()),
            c2=nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()),
            c3=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(32, 4),
        )
    )


def train_pattern_cnn(seed: int = 0, steps: int = 40) -> nn.Sequential:
    torch.manual_seed(seed)
    model = pattern_cnn()
    x, y = pattern_images(64, seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """(model, class images D_c, eval images, eval labels, circuit, evaluation), built once."""
    with one_thread():
        model = train_pattern_cnn()
        xv, yv = pattern_images(8, 99)
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).double().mean().item()
        assert acc > 0.9, f"the pattern CNN did not learn its task (val accuracy {acc:.3f})"
        cls_images = pattern_images(8, 7)[0][:8]  # class 0 comes first
        cls_images = cls_images[torch.as_tensor(select_class_images(model, cls_images, CLASS))]
        circuit = build_circuit(model, cls_images, CLASS, LAYERS, BUILD, model_name="pattern", class_name="horizontal")
        ev = evaluate_circuit(model, circuit, cls_images, eval_images=xv, eval_labels=yv, config=EVAL)
    return model, cls_images, xv, yv, circuit, ev


# --------------------------------------------------------------------------- the paper's claims


def test_optimality_core_beats_random(trained):
    """Figure 4: random sets of the same size change the concept more than the core set."""
    ev = trained[-1]
    opt = ev.optimality
    print("\noptimality (layer, tau, mean L(random)-L(core), 99% CI, frac random better):")
    for c in opt.cells:
        print(f"  {c.upper_layer}->{c.layer} tau={c.tau}: {c.mean_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] {c.frac_random_better:.3f}")
    print(f"  pooled: {opt.pooled_mean_diff:+.3f} [{opt.pooled_ci_low:+.3f}, {opt.pooled_ci_high:+.3f}], random better {opt.pooled_frac_random_better:.3f}")
    assert opt.pooled_mean_diff > 0 and opt.pooled_ci_low > 0
    # Per cell "on average" (the paper: positive in all cases); the CI is not required per
    # cell on this small sample.
    assert sum(c.mean_diff > 0 for c in opt.cells) >= len(opt.cells) - 1
    # "only a few cases show a random combination achieving a smaller loss"
    assert opt.pooled_frac_random_better < 0.25
    assert all(v == 1.0 for v in opt.concept_agreement.values())  # V_a recomputed = stored V_a
    assert len(opt.cases) == sum(c.n_targets for c in opt.cells)
    assert all(len(case.random_losses) == EVAL.random_sets for case in opt.cases)


def test_fidelity_masking_core_hurts_more(trained):
    """Figure 5 (masking version): masking the core neurons hurts more than masking random ones."""
    fid = trained[-1].fidelity
    _print_fidelity(fid)
    mask_core = np.mean([c.mask_core for c in fid.cells])
    mask_random = np.mean([c.mask_random for c in fid.cells])
    assert mask_core < mask_random
    assert all(c.mask_core <= c.mask_random + 1e-9 for c in fid.cells)
    # below the logit layer, single and multi scope are the same experiment
    first = [c for c in fid.cells if c.layer == LAYERS[1]]
    assert {c.scope for c in first} == {"single", "multi"} and len({(c.mask_core, c.retain_core) for c in first if c.tau == 2}) == 1


def test_fidelity_retaining_core_keeps_more(trained):
    """Figure 5 (retaining version): retaining only the core keeps more than retaining random."""
    fid = trained[-1].fidelity
    retain_core = np.mean([c.retain_core for c in fid.cells])
    retain_random = np.mean([c.retain_random for c in fid.cells])
    assert retain_core > retain_random
    assert all(c.retain_core >= c.retain_random - 1e-9 for c in fid.cells)


def test_correlation_positive_at_small_cardinality(trained):
    """Figure 6: summed |IG| of a combination correlates with the knock-out loss it causes."""
    cor = trained[-1].correlation
    print("\ncorrelation (layer, m, pearson, spearman):")
    for c in cor.cells:
        print(f"  {c.upper_layer}->{c.layer} m={c.cardinality}: {c.pearson:+.3f} {c.spearman:+.3f} ({c.n_targets} targets)")
    print(f"  mean pearson {cor.mean_pearson:+.3f}, mean spearman {cor.mean_spearman:+.3f}, m<=5 spearman {cor.small_cardinality_spearman(5):+.3f}")
    assert cor.small_cardinality_spearman(5) > 0.2
    singles = [c for c in cor.cells if c.cardinality == 1]
    assert np.nanmean([c.spearman for c in singles]) > 0.2
    assert cor.mean_pearson > 0 and cor.mean_spearman > 0


def test_summary_of_the_trained_model_is_faithful(trained):
    s = trained[-1].summary
    assert s.faithful is True
    props = s.properties()
    assert props["eval_faithful"] is True
    assert set(props) >= {"eval_optimality_diff", "eval_fidelity_mask_core", "eval_fidelity_mask_random", "eval_correlation_spearman"}


def _print_fidelity(fid: FidelityResult) -> None:
    print(f"\nfidelity (base accuracy {fid.base_accuracy:.3f} on {fid.n_images} images, other {fid.base_other_accuracy:.3f} on {fid.n_other}):")
    for c in fid.cells:
        print(
            f"  tau={c.tau} {c.layer:>3} {c.scope:<6} n={c.n_neurons}: mask core {c.mask_core:.3f} random {c.mask_random:.3f}; "
            f"retain core {c.retain_core:.3f} random {c.retain_random:.3f}; other mask core {c.other_mask_core:.3f}"
        )


# --------------------------------------------------------------------------- mechanics


def test_fast_knockout_equals_hook_knockout(trained):
    """Running masked feature maps through the segment = hooks on the whole model (Def. 2)."""
    model, images, _, _, circuit, _ = trained
    split = split_model(model, circuit.layers)
    with one_thread():
        for t in (circuit.targets[0], circuit.targets[1], circuit.targets[-1]):
            jobs = [(t.target, ()), (t.target, t.core[:2]), (t.target, (0, 3, 5))]
            fast = knocked_concepts(model, circuit, images, jobs, max_batch=7)  # several segment calls per batch
            for (target, knocked), got in zip(jobs, fast):
                slow = knockout_concepts(model, split, images, circuit.patches, target.layer, [target.channel], {t.lower_layer: knocked}, circuit.config.k)[0]
                np.testing.assert_array_equal(got, slow)
            np.testing.assert_array_equal(fast[0], np.asarray(t.concept))  # nothing knocked out: the stored V_a


def test_fidelity_masking_equals_hooks_on_the_whole_model(trained):
    """The segment chain of the fidelity experiment = knockout()/retain() hooks on the model."""
    from neurflow.intervention import masked_predictions
    from neurflow.masking import channel_mask, knockout, retain

    model, _, xv, _, circuit, _ = trained
    split = split_model(model, circuit.layers)
    jobs = [{}, {"c3": ([1, 2], False)}, {"c3": ([0, 5, 7], True)}, {"c3": ([3], False), "c2": ([1, 4], False)}, {"c3": ([3, 9], True), "c2": ([0, 2, 6], True), "c1": ([4], False)}]
    widths = {"c3": 32, "c2": 16, "c1": 16}
    with one_thread():
        for start in ("c2", "c1"):
            usable = [j for j in jobs if all(circuit.layers.index(n) <= circuit.layers.index(start) for n in j)]
            masks = {}
            for name in ("c3", "c2", "c1")[: circuit.layers.index(start)]:
                masks[name] = torch.stack([channel_mask(widths[name], j[name][0], keep=j[name][1]) if name in j else torch.ones(widths[name]) for j in usable])
            got = masked_predictions(split, start, xv, masks, batch_size=7, max_batch=20)
            for row, job in zip(got, usable):
                with contextlib.ExitStack() as stack:
                    for name, (channels, keep) in job.items():
                        stack.enter_context((retain if keep else knockout)(model, {name: channels}))
                    with torch.no_grad():
                        want = model(xv).argmax(1)
                assert torch.equal(row, want)


def test_deterministic_for_a_seed(trained):
    model, images, _, _, circuit, _ = trained
    cfg = EvaluationConfig(samples=2, random_sets=5, taus=(2,), max_cardinality=3, combinations=4, seed=3)
    with one_thread():
        a = to_jsonable(optimality(model, circuit, images, cfg))
        b = to_jsonable(optimality(model, circuit, images, cfg))
        c = to_jsonable(optimality(model, circuit, images, EvaluationConfig(**{**cfg.__dict__, "seed": 4})))
        d = to_jsonable(correlation(model, circuit, images, cfg))
        e = to_jsonable(correlation(model, circuit, images, cfg))
    assert a == b
    assert a["cases"] != c["cases"]  # another seed draws other random sets
    assert d == e


def test_batched_engine_gives_the_results_of_the_straightforward_one(trained):
    """On the trained (float32) CNN, optimality and correlation are the same with the
    straightforward knock-out engine (one row per (target, set), every upper channel) and
    with the batched one (shared lower maps, deduplicated sets, sliced segments)."""
    from neurflow.intervention import KnockoutEngine

    model, images, _, _, circuit, _ = trained
    cfg = EvaluationConfig(samples=3, random_sets=8, taus=(2, 4), max_cardinality=4, combinations=6, seed=1)
    split = split_model(model, circuit.layers)
    with one_thread():
        ref = {u: KnockoutEngine(split, u, images, circuit.patches, batched=False) for u in circuit.layers[:-1]}
        shared: dict = {}
        assert to_jsonable(optimality(model, circuit, images, cfg, engines=ref)) == to_jsonable(optimality(model, circuit, images, cfg, engines=shared))
        assert set(shared) == set(circuit.layers[:-1])  # the engines (and their lower maps) are kept for the next experiment
        assert to_jsonable(correlation(model, circuit, images, cfg, engines=ref), arrays=True) == to_jsonable(correlation(model, circuit, images, cfg, engines=shared), arrays=True)


def test_layers_selects_the_transitions(trained):
    model, images, xv, yv, circuit, _ = trained
    cfg = EvaluationConfig(samples=1, random_sets=3, taus=(2,), fidelity_draws=1, max_cardinality=2, combinations=3, layers=("c2",))
    with one_thread():
        ev = evaluate_circuit(model, circuit, images, eval_images=xv, eval_labels=yv, config=cfg)
    assert {c.layer for c in ev.optimality.cells} == {"c2"}
    assert {c.layer for c in ev.correlation.cells} == {"c2"}
    assert {(c.layer, c.scope, c.layers) for c in ev.fidelity.cells} == {("c2", "single", ("c2",)), ("c2", "multi", ("c3", "c2"))}
    with pytest.raises(ValueError, match="choose from"):
        optimality(model, circuit, images, EvaluationConfig(layers=("fc",)))


def test_random_sets_have_the_core_size_and_are_not_all_equal(trained):
    opt: OptimalityResult = trained[-1].optimality
    for case in opt.cases:
        assert len(case.core) == case.tau
        assert len(set(case.random_losses)) >= 1
    # taus above the circuit's tau are capped to it
    model, images, _, _, circuit, _ = trained
    with one_thread():
        capped = optimality(model, circuit, images, EvaluationConfig(samples=1, random_sets=2, taus=(99,)))
    assert {c.tau for c in capped.cells} == {circuit.config.tau}


def test_circuit_neurons_truncates_the_hypertree(trained):
    circuit = trained[-2]
    full = circuit_neurons(circuit, circuit.config.tau)
    for layer in circuit.layers:
        assert set(full[layer]) == {n.channel for n in circuit.neurons(layer)}
    one = circuit_neurons(circuit, 1)
    root = circuit.core_of(circuit.root)
    assert one[circuit.layers[1]] == (root.core[0],)
    for layer in circuit.layers:
        assert set(one[layer]) <= set(full[layer])


def test_verify_inputs_refuses_other_weights_and_images(trained):
    model, images, _, _, circuit, _ = trained
    verify_inputs(circuit, model, images)  # the right ones pass
    other = pattern_cnn().eval()
    with pytest.raises(EvaluationInputError, match="weights"):
        verify_inputs(circuit, other, images)
    with pytest.raises(EvaluationInputError, match="data fingerprint"):
        verify_inputs(circuit, model, images + 1e-3)
    with pytest.raises(EvaluationInputError, match="expected"):
        verify_inputs(circuit, model, images[:-1])
    with pytest.raises(EvaluationInputError, match="patch grid"):
        verify_inputs(circuit, model, F.interpolate(images, size=8))
    with pytest.raises(ValueError, match="unknown experiment"):
        evaluate_circuit(model, circuit, images, experiments=("optimality", "bogus"))


def test_config_validation():
    with pytest.raises(ValueError, match="random_sets"):
        EvaluationConfig(random_sets=0)
    with pytest.raises(ValueError, match="taus"):
        EvaluationConfig(taus=())
    assert EvaluationConfig(taus=[4.0, 8]).taus == (4, 8)


def test_summarize_rule():
    """faithful = optimality significantly positive and masking core hurts more than random."""

    def opt(mean: float, low: float) -> OptimalityResult:
        return OptimalityResult((), (), mean, low, mean + 0.1, 0.0, {}, 10, 0)

    def fid(core: float, rand: float) -> FidelityResult:
        cell = FidelityCell(4, "l", "single", ("l",), (4,), core, rand, 0.0, 1.0, 0.5, 0.0, *([float("nan")] * 4))
        return FidelityResult((cell,), 1.0, float("nan"), 8, 0, 4, 0)

    assert summarize(opt(0.2, 0.1), fid(0.3, 0.9), None).faithful is True
    assert summarize(opt(0.2, -0.01), fid(0.3, 0.9), None).faithful is False  # CI touches 0
    assert summarize(opt(0.2, 0.1), fid(0.9, 0.3), None).faithful is False  # masking core hurts less
    assert summarize(opt(0.2, 0.1), None, None).faithful is None
    s = summarize(None, fid(0.3, 0.9), None)
    assert s.properties() == {"eval_fidelity_mask_core": 0.3, "eval_fidelity_mask_random": 0.9, "eval_fidelity_retain_core": 1.0, "eval_fidelity_retain_random": 0.5}


def test_to_jsonable_is_json(trained):
    ev = trained[-1]
    doc = to_jsonable(ev)
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert back["optimality"]["cells"][0]["layer"] == "c3"
    assert back["optimality"]["cases"][0]["target"] == "fc:0"
    assert "importance" not in back["correlation"]["targets"][0]
    assert math.isclose(back["summary"]["optimality_diff"], ev.summary.optimality_diff)
    with_arrays = to_jsonable(ev.correlation, arrays=True)
    assert len(with_arrays["targets"][0]["importance"]) == len(ev.correlation.targets[0].cardinalities)
