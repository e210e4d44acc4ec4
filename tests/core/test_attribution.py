"""Batched integrated gradients (neurflow.attribution): captum's contract and captum's tests.

The trio of captum's IG tests (analytic values on a hand-built net, completeness, batched =
unbatched) plus agreement with ``captum.attr.IntegratedGradients`` itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from neurflow import QUADRATURES, integrated_gradients, quadrature
from neurflow.attribution import ig_precision
from neurflow.segments import neuron_activations

from .nets import conv_bn_relu, needs_cuda

CAPTUM_METHODS = ("riemann_right", "riemann_left", "riemann_middle", "gausslegendre")
# 16 steps: the Riemann alphas and step sizes are dyadic, so captum's float32 copies of them
# (torch.linspace / ``.float()``) are exact and the comparison can be at float64 precision.
STEPS = 16


def _inputs(seed: int = 0, shape=(6, 4, 5, 5)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _membership(num_targets: int, num_inputs: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(num_targets, num_inputs, generator=g) < 0.5
    m[:, 0] = True  # every target has an input
    m[0, -1] = False  # and the last input is used by some targets only
    return m


# -- (f) quadrature rules -------------------------------------------------------------------


@pytest.mark.parametrize("method", QUADRATURES)
@pytest.mark.parametrize("steps", [2, 3, 16, 50])
def test_quadrature_nodes_and_weights(method, steps):
    alphas, weights = quadrature(method, steps)
    assert alphas.shape == weights.shape == (steps,)
    assert alphas.dtype == weights.dtype == np.float64
    assert np.all((alphas >= 0) & (alphas <= 1)) and np.all(np.diff(alphas) > 0)
    assert np.all(weights > 0)
    # Every rule here, the trapezoid included, has weights summing to 1 (captum's trapezoid
    # sums to 1 - 1/n; ours is the true trapezoid rule, as documented).
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("steps", [1, 2, 7, 16])
def test_quadrature_formulas(steps):
    n = steps
    a, w = quadrature("riemann_right", n)  # Eq. 2 of the paper: alphas n/N, weights 1/N
    assert np.allclose(a, np.arange(1, n + 1) / n, rtol=0, atol=1e-15) and np.all(w == 1.0 / n)
    a, _ = quadrature("riemann_left", n)
    assert np.allclose(a, np.arange(n) / n, rtol=0, atol=1e-15)
    a, _ = quadrature("riemann_middle", n)
    assert np.allclose(a, (np.arange(n) + 0.5) / n, rtol=0, atol=1e-15)
    # Gauss-Legendre: captum's float64 builders exactly
    steps_fn, alphas_fn = approximation_parameters("gausslegendre")
    a, w = quadrature("gausslegendre", n)
    assert np.array_equal(a, alphas_fn(n)) and np.array_equal(w, steps_fn(n))
    # integrates polynomials of degree <= 2n - 1 exactly on [0, 1]
    for degree in range(2 * n):
        assert np.dot(w, a**degree) == pytest.approx(1.0 / (degree + 1), rel=1e-13)


def test_quadrature_riemann_matches_captum_nodes():
    for method in ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid"):
        steps_fn, alphas_fn = approximation_parameters(method)
        a, w = quadrature(method, STEPS)
        assert np.allclose(a, alphas_fn(STEPS), rtol=0, atol=1e-7), method  # captum: float32 linspace
        if method != "riemann_trapezoid":
            assert np.array_equal(w, steps_fn(STEPS)), method


@pytest.mark.parametrize("n", [2, 5, 16])
def test_trapezoid_weights_are_the_documented_ones(n):
    a, w = quadrature("riemann_trapezoid", n)
    assert np.array_equal(a, np.linspace(0.0, 1.0, n))
    assert w[0] == w[-1] == 1.0 / (2 * (n - 1))
    assert np.all(w[1:-1] == 1.0 / (n - 1))
    captum_w = np.array(approximation_parameters("riemann_trapezoid")[0](n))
    assert captum_w.sum() == pytest.approx(1.0 - 1.0 / n)
    assert np.allclose(w, captum_w * n / (n - 1), rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    "method,steps,message",
    [
        ("riemann_right", 0, "steps must be >= 1, got 0"),
        ("gausslegendre", -3, "steps must be >= 1, got -3"),
        ("riemann_trapezoid", 1, "the trapezoid rule needs steps >= 2"),
        ("simpson", 8, "unknown quadrature 'simpson'; choose one of riemann_right, riemann_left, riemann_middle, riemann_trapezoid, gausslegendre"),
    ],
)
def test_quadrature_errors(method, steps, message):
    with pytest.raises(ValueError, match=message):
        quadrature(method, steps)


# -- (a) analytic values -----------------------------------------------------------------


@pytest.mark.parametrize("method", QUADRATURES)
@pytest.mark.parametrize("steps", [2, 3, 7])
def test_linear_segment_gives_input_times_weight(method, steps):
    """A 1x1 conv is linear: IG = w[t, c] * mean_hw x[c] for any quadrature whose weights sum to 1."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 1).double()
    x = _inputs(1, (5, 4, 3, 3))
    attr = integrated_gradients(conv, x, torch.tensor([2, 0]), steps=steps, method=method)
    w = conv.weight.detach().view(3, 4)
    want = w[[2, 0]].unsqueeze(1) * x.mean((2, 3)).unsqueeze(0)  # [T, P, C]
    assert attr.shape == (2, 5, 4)
    assert torch.allclose(attr, want, rtol=1e-12, atol=1e-14)


class _Power(nn.Module):
    """One output channel: sum over channels of x ** p (so y = mean_hw sum_c x^p)."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        return (x**self.p).sum(1, keepdim=True)


def _power_factor(method: str, n: int, p: int) -> float:
    """p * sum_n w_n alpha_n^(p-1): the quadrature of p * int_0^1 alpha^(p-1) = 1, by hand."""
    if method == "riemann_right":
        alphas = [(i + 1) / n for i in range(n)]
        weights = [1 / n] * n
    elif method == "riemann_left":
        alphas = [i / n for i in range(n)]
        weights = [1 / n] * n
    elif method == "riemann_middle":
        alphas = [(2 * i + 1) / (2 * n) for i in range(n)]
        weights = [1 / n] * n
    elif method == "riemann_trapezoid":
        alphas = [i / (n - 1) for i in range(n)]
        weights = [1 / (n - 1)] * n
        weights[0] = weights[-1] = 1 / (2 * (n - 1))
    else:
        return 1.0  # Gauss-Legendre is exact for these degrees (n >= 2)
    return p * sum(w * a ** (p - 1) for a, w in zip(alphas, weights))


@pytest.mark.parametrize("method", QUADRATURES)
@pytest.mark.parametrize("steps", [2, 5])
@pytest.mark.parametrize("p", [2, 3])
def test_power_segment_closed_form(method, steps, p):
    """y = mean_hw sum_c x^p: IG[c] = mean_hw(x_c^p) * p * sum_n w_n alpha_n^(p-1)."""
    x = _inputs(2, (4, 3, 2, 2))
    attr = integrated_gradients(_Power(p), x, torch.tensor([0]), steps=steps, method=method)[0]
    factor = _power_factor(method, steps, p)
    assert torch.allclose(attr, (x**p).mean((2, 3)) * factor, rtol=1e-12, atol=1e-14)


def test_power_segment_known_factors():
    """The hand factors themselves: right/left Riemann are biased, midpoint/trapezoid/GL exact for x^2."""
    assert _power_factor("riemann_right", 4, 2) == pytest.approx(5 / 4)
    assert _power_factor("riemann_left", 4, 2) == pytest.approx(3 / 4)
    assert _power_factor("riemann_middle", 4, 2) == pytest.approx(1.0)
    assert _power_factor("riemann_trapezoid", 4, 2) == pytest.approx(1.0)
    assert _power_factor("riemann_middle", 4, 3) == pytest.approx(1 - 1 / (4 * 16))  # 1 - 1/(4N^2)
    # and the kernel reproduces GL's exactness where the midpoint rule is not exact
    x = _inputs(3, (2, 2, 2, 2))
    gl = integrated_gradients(_Power(3), x, torch.tensor([0]), steps=2, method="gausslegendre")[0]
    mid = integrated_gradients(_Power(3), x, torch.tensor([0]), steps=2, method="riemann_middle")[0]
    exact = (x**3).mean((2, 3))
    assert torch.allclose(gl, exact, rtol=1e-13, atol=1e-15)
    assert torch.allclose(mid, exact * (1 - 1 / 16), rtol=1e-13, atol=1e-15)


# -- (b) completeness ----------------------------------------------------------------------


def _smooth_segment() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 3, 1), nn.Softplus()).double().eval()


def test_completeness_error_shrinks_with_steps():
    seg = _smooth_segment()
    x = _inputs(4, (3, 4, 5, 5))
    targets = torch.tensor([0, 1, 2])
    with torch.no_grad():
        y = neuron_activations(seg(x))
        y0 = neuron_activations(seg(torch.zeros_like(x)))
    delta_f = (y - y0).T  # [T, P]
    errors = {}
    for method in ("gausslegendre", "riemann_right"):
        for steps in (2, 4, 8, 16, 32):
            attr = integrated_gradients(seg, x, targets, steps=steps, method=method)
            errors[method, steps] = float((attr.sum(-1) - delta_f).abs().max())
    gl = [errors["gausslegendre", s] for s in (2, 4, 8, 16)]
    assert all(b < a for a, b in zip(gl, gl[1:])), gl
    assert gl[-1] < 1e-9  # spectral convergence for a smooth segment
    rr = [errors["riemann_right", s] for s in (2, 4, 8, 16, 32)]
    assert all(b < a for a, b in zip(rr, rr[1:])), rr
    assert rr[-1] < 0.6 * rr[-2]  # first order: the error roughly halves
    assert errors["riemann_right", 32] > errors["gausslegendre", 4]


# -- (c) agreement with captum -------------------------------------------------------------


def _captum_reference(seg, x, targets, steps, method):
    ig = IntegratedGradients(lambda z: neuron_activations(seg(z)))
    rows = []
    for t in targets.tolist():
        a = ig.attribute(x, baselines=0.0, target=int(t), n_steps=steps, method=method)  # [P, C, H, W]
        rows.append(a.sum((2, 3)))  # [P, C]
    return torch.stack(rows)  # [T, P, C]


def _check_against_captum(device: torch.device):
    seg = conv_bn_relu().to(device)
    x = _inputs(5).to(device)  # [6, 4, 5, 5]
    targets = torch.tensor([4, 0, 2, 3])
    member = _membership(4, 6)
    for method in CAPTUM_METHODS:
        ours = integrated_gradients(seg, x, targets, member, steps=STEPS, method=method, max_batch=40)
        ref = _captum_reference(seg, x, targets, STEPS, method)
        assert ours.shape == (4, 6, 4) and ours.dtype == torch.float64 and ours.device == x.device
        m = member.to(device)
        assert torch.equal(ours[~m], torch.zeros_like(ours[~m])), method
        assert ref[m].abs().max() > 0.1  # the comparison is not between zeros
        if method == "gausslegendre":
            # captum multiplies by ``torch.tensor(step_sizes).float()``: GL weights rounded to
            # float32 (integrated_gradients.py, _attribute), a relative error ~1e-8.
            assert torch.allclose(ours[m], ref[m], rtol=1e-6, atol=1e-9), method
        else:
            assert torch.allclose(ours[m], ref[m], rtol=1e-9, atol=1e-12), method
    return seg, x, targets, member


def test_agrees_with_captum_integrated_gradients():
    _check_against_captum(torch.device("cpu"))


def test_pairs_store_only_the_used_pairs_and_equal_captum():
    """The sparse form the circuit build uses: one row per (target, input) pair that
    membership marks, in row-major order, each equal to captum's dense answer (float64)."""
    from neurflow.attribution import integrated_gradients_pairs

    seg = conv_bn_relu()
    x = _inputs(5)  # [6, 4, 5, 5]
    targets = torch.tensor([4, 0, 2, 3])
    member = _membership(4, 6)
    pt, pi, attr = integrated_gradients_pairs(seg, x, targets, member, steps=STEPS, method="riemann_right", max_batch=40)
    expected = torch.nonzero(member)
    assert torch.equal(pt, expected[:, 0]) and torch.equal(pi, expected[:, 1])
    assert attr.shape == (int(member.sum()), 4) and int(member.sum()) < member.numel()  # no T x P storage
    ref = _captum_reference(seg, x, targets, STEPS, "riemann_right")  # [T, P, C] dense
    torch.testing.assert_close(attr, ref[pt, pi], rtol=0, atol=1e-10)
    dense = integrated_gradients(seg, x, targets, member, steps=STEPS, method="riemann_right", max_batch=40)
    assert torch.equal(dense[pt, pi], attr) and int(torch.count_nonzero(dense.abs().sum(-1))) <= len(pt)


def test_gausslegendre_agrees_with_a_float64_per_target_loop():
    """captum's contract with float64 step sizes: alphas folded into the batch, one backward per target."""
    seg = conv_bn_relu()
    x = _inputs(5)
    targets = torch.tensor([4, 0, 2])
    steps_fn, alphas_fn = approximation_parameters("gausslegendre")
    w = torch.tensor(steps_fn(STEPS), dtype=torch.float64)
    a = torch.tensor(alphas_fn(STEPS), dtype=torch.float64)
    ours = integrated_gradients(seg, x, targets, steps=STEPS, method="gausslegendre")
    for ti, t in enumerate(targets.tolist()):
        scaled = (a.view(-1, 1, 1, 1, 1) * x.unsqueeze(0)).reshape(-1, *x.shape[1:]).requires_grad_(True)
        y = neuron_activations(seg(scaled))[:, t]
        (g,) = torch.autograd.grad(y.sum(), scaled)
        g = (g.view(STEPS, *x.shape) * w.view(-1, 1, 1, 1, 1)).sum(0)
        assert torch.allclose(ours[ti], (g * x).sum((2, 3)), rtol=1e-11, atol=1e-13)


def test_trapezoid_is_captums_trapezoid_rescaled():
    """Ours uses the true trapezoid weights, captum's are the same times (n-1)/n."""
    seg = conv_bn_relu()
    x = _inputs(5)
    n = 17  # alphas k/16 are exact in captum's float32 linspace
    ours = integrated_gradients(seg, x, torch.tensor([1, 3]), steps=n, method="riemann_trapezoid")
    ref = _captum_reference(seg, x, torch.tensor([1, 3]), n, "riemann_trapezoid")
    # captum's step size 1/17 is rounded to float32
    assert torch.allclose(ours, ref * n / (n - 1), rtol=1e-6, atol=1e-9)


# -- (d) batched = unbatched, (e) membership ----------------------------------------------


@pytest.mark.parametrize("method", ["riemann_right", "gausslegendre"])
def test_independent_of_max_batch_and_target_order(method):
    seg = conv_bn_relu()
    x = _inputs(6)
    targets = torch.tensor([0, 1, 2, 3, 4])
    member = _membership(5, 6, seed=1)
    steps = 8
    one_per_chunk = integrated_gradients(seg, x, targets, member, steps=steps, method=method, max_batch=steps)
    all_at_once = integrated_gradients(seg, x, targets, member, steps=steps, method=method, max_batch=10**6)
    odd_chunks = integrated_gradients(seg, x, targets, member, steps=steps, method=method, max_batch=3 * steps - 1)
    assert torch.allclose(one_per_chunk, all_at_once, rtol=1e-12, atol=1e-14)
    assert torch.allclose(odd_chunks, all_at_once, rtol=1e-12, atol=1e-14)
    perm = torch.tensor([3, 0, 4, 2, 1])
    permuted = integrated_gradients(seg, x, targets[perm], member[perm], steps=steps, method=method)
    assert torch.allclose(permuted, all_at_once[perm], rtol=1e-12, atol=1e-14)
    # one target at a time, one input at a time
    for t in range(5):
        for p in range(6):
            if member[t, p]:
                single = integrated_gradients(seg, x[p : p + 1], targets[t : t + 1], steps=steps, method=method)
                assert torch.allclose(single[0, 0], all_at_once[t, p], rtol=1e-12, atol=1e-14)


def test_membership_none_means_every_input_and_zeros_elsewhere():
    seg = conv_bn_relu()
    x = _inputs(7)
    targets = torch.tensor([1, 2])
    full = integrated_gradients(seg, x, targets, steps=4)
    explicit = integrated_gradients(seg, x, targets, torch.ones(2, 6, dtype=torch.bool), steps=4)
    assert torch.equal(full, explicit)
    member = torch.zeros(2, 6, dtype=torch.bool)
    member[0, 2] = True
    sparse = integrated_gradients(seg, x, targets, member, steps=4)
    assert torch.count_nonzero(sparse[1]) == 0 and torch.count_nonzero(sparse[0, [0, 1, 3, 4, 5]]) == 0
    assert torch.allclose(sparse[0, 2], full[0, 2], rtol=1e-12, atol=1e-14)
    assert sparse[0, 2].abs().sum() > 0


def test_linear_lower_layer():
    """2-D inputs (a linear layer below): no spatial axes to sum."""
    torch.manual_seed(0)
    fc = nn.Linear(5, 3).double()
    x = _inputs(8, (4, 5))
    attr = integrated_gradients(fc, x, torch.tensor([0, 2]), steps=3, method="gausslegendre")
    want = fc.weight.detach()[[0, 2]].unsqueeze(1) * x.unsqueeze(0)
    assert torch.allclose(attr, want, rtol=1e-12, atol=1e-14)


# -- (g) bad inputs ------------------------------------------------------------------------


def test_bad_inputs():
    seg = conv_bn_relu()
    x = _inputs(9)
    for bad_value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[2, 1, 0, 0] = bad_value
        with pytest.raises(ValueError, match="inputs contain NaN or infinite values"):
            integrated_gradients(seg, bad, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"membership must be \[2, 6\], got \(6, 2\)"):
        integrated_gradients(seg, x, torch.tensor([0, 1]), torch.ones(6, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"inputs must be \[P, C, ...\], got shape \(6,\)"):
        integrated_gradients(seg, torch.zeros(6, dtype=torch.float64), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown quadrature 'simpson'"):
        integrated_gradients(seg, x, torch.tensor([0]), method="simpson")


# -- (h) reduced precision -------------------------------------------------------------------


def test_fp32_precision_is_the_default_bit_for_bit():
    seg = conv_bn_relu().float()
    x = _inputs(3).float()
    member = _membership(3, 6)
    base = integrated_gradients(seg, x, torch.tensor([0, 2, 4]), member, steps=8)
    again = integrated_gradients(seg, x, torch.tensor([0, 2, 4]), member, steps=8, precision="fp32")
    tf32 = integrated_gradients(seg, x, torch.tensor([0, 2, 4]), member, steps=8, precision="tf32")  # no TF32 on a CPU
    assert torch.equal(base, again) and torch.equal(base, tf32)


def test_bf16_autocast_on_cpu_is_close_to_fp32_and_keeps_the_dtype():
    seg = conv_bn_relu().float()
    x = _inputs(4).float()
    targets = torch.tensor([0, 1, 3])
    member = _membership(3, 6, seed=4)
    exact = integrated_gradients(seg, x, targets, member, steps=8)
    bf16 = integrated_gradients(seg, x, targets, member, steps=8, precision="bf16")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, exact)  # autocast did run the segment in bfloat16
    scale = exact.abs().max()
    # bfloat16 has an 8-bit mantissa (relative rounding 2^-8 = 0.4%) per operation
    assert (bf16 - exact).abs().max() <= 0.03 * scale
    assert (bf16 == 0).equal(exact == 0)  # the same pairs are filled
    # completeness still holds to bfloat16 accuracy
    full = integrated_gradients(seg, x, targets, steps=32, precision="bf16", method="gausslegendre")  # [T, P, C]
    with torch.no_grad():
        y = neuron_activations(seg(x))[:, targets] - neuron_activations(seg(torch.zeros_like(x)))[:, targets]  # [P, T]
    assert torch.allclose(full.sum(-1), y.T, rtol=0.03, atol=0.03 * float(y.abs().max()))


def test_ig_precision_sets_and_restores_the_tf32_flags():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for start in (True, False):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = start
            for precision, inside in (("tf32", True), ("fp32", False)):
                with ig_precision(precision, "cuda"):  # only flags: runs without a GPU
                    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (inside, inside)
                assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (start, start)
            with pytest.raises(RuntimeError, match="boom"):
                with ig_precision("tf32" if not start else "fp32", "cuda"):
                    raise RuntimeError("boom")
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (start, start)
            with ig_precision("tf32", "cpu"):  # the CPU has no TF32: nothing is touched
                assert torch.backends.cudnn.allow_tf32 == start
        with ig_precision("bf16", "cpu"):
            assert torch.is_autocast_enabled("cpu")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    with pytest.raises(ValueError, match="IG precision must be one of fp32, tf32, bf16, got 'fp16'"):
        with ig_precision("fp16", "cpu"):
            pass
    with pytest.raises(ValueError, match="IG precision must be one of fp32, tf32, bf16, got 'half'"):
        integrated_gradients(conv_bn_relu(), _inputs(1), torch.tensor([0]), precision="half")


# -- GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_agrees_with_captum_and_cpu_on_cuda():
    seg, x, targets, member = _check_against_captum(torch.device("cuda"))
    for method in CAPTUM_METHODS:
        on_gpu = integrated_gradients(seg, x, targets, member, steps=STEPS, method=method).cpu()
        on_cpu = integrated_gradients(seg.cpu(), x.cpu(), targets, member, steps=STEPS, method=method)
        seg.to("cuda")
        assert torch.allclose(on_gpu, on_cpu, rtol=1e-9, atol=1e-12), method
