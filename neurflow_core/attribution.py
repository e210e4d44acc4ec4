"""Integrated gradients of many target neurons at once (the importance score, Eq. 2).

``T(a, s_i, V_a)`` integrates the gradient of target neuron ``a`` (the spatial mean of one
output channel of a segment) along the straight line from a zero baseline to the lower
layer's feature map ``x = phi^{1,l-1}(v)``, and sums ``x * grad`` over the spatial positions
of channel ``s_i`` (Eq. 2).

captum's ``IntegratedGradients`` computes this for one target per call. NeurFlow needs it
for every target neuron of a layer, each over its own top-k patches ``V_a``; the authors'
released code therefore loops over targets and repeats the forward pass for every target.
Here the forward pass over the interpolated inputs of a chunk of patches is run once and
shared by every target that integrates over any of those patches; one backward pass over
the chunk carries a different target on every row, so the Python loop runs over "rounds"
(the most targets sharing one patch of the chunk), not over targets. The quadrature
(alphas and step sizes) follows captum's contract, so results match captum exactly up to
floating-point summation order, which the tests check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch

from .activations import to_device
from .layout import memory_format_of
from .segments import neuron_activations

__all__ = ["IG_PRECISIONS", "QUADRATURES", "ig_precision", "quadrature", "integrated_gradients", "integrated_gradients_pairs"]

Quadrature = Literal["riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
QUADRATURES: tuple[str, ...] = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")
IgPrecision = Literal["fp32", "tf32", "bf16"]
IG_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def ig_precision(precision: str, device: torch.device | str) -> Iterator[None]:
    """Arithmetic of the integrated-gradients forward and backward passes, for the duration.

    * ``fp32``: the inputs' dtype; on CUDA, TF32 is switched off for cuBLAS matmuls and
      cuDNN convolutions (torch lets cuDNN use TF32 by default), so float32 means float32.
    * ``tf32``: on CUDA, matmuls and convolutions in TensorFloat-32 (10-bit mantissa inputs,
      float32 accumulation; Ampere and later). The CPU has no TF32: the same as ``fp32``.
    * ``bf16``: the segment runs under ``torch.autocast`` with bfloat16 (8-bit mantissa) on
      the device, CPU included; gradients and attributions come back in the inputs' dtype.

    The global TF32 flags are restored on exit, also after errors.

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in IG_PRECISIONS:
        raise ValueError(f"IG precision must be one of {', '.join(IG_PRECISIONS)}, got '{precision}'")
    device_type = torch.device(device).type
    if precision == "bf16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
        return
    if device_type != "cuda":
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (alphas in [0, 1]) and weights (step sizes) of an IG quadrature rule.

    ``riemann_right`` with ``steps=N`` is exactly Eq. 2 of the paper (alphas n/N, weights
    1/N). ``riemann_left``, ``riemann_middle`` and ``gausslegendre`` use captum's alphas and
    step sizes (``captum.attr._utils.approximation_methods``). ``riemann_trapezoid`` is the
    true trapezoid rule (end weights ``1/(2(n-1))``, weights summing to 1); captum's variant
    uses ``1/n`` with halved ends, whose weights sum to ``1 - 1/n``.

    Args:
        method: one of :data:`QUADRATURES`.
        steps: number of nodes, >= 1 (>= 2 for the trapezoid rule).

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``steps``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n = steps
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1.0) / 2.0, w / 2.0
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("the trapezoid rule needs steps >= 2")
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 1.0 / (2 * (n - 1))
        return np.linspace(0.0, 1.0, n), w
    w = np.full(n, 1.0 / n)
    if method == "riemann_right":
        return np.linspace(1.0 / n, 1.0, n), w
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / n, n), w
    if method == "riemann_middle":
        return np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n), w
    raise ValueError(f"unknown quadrature '{method}'; choose one of {', '.join(QUADRATURES)}")


def _plan_chunks(order: list[int], users: list[list[int]], per_chunk: int, slack: float = 0.05) -> Iterator[list[int]]:
    """Cut ``order`` (inputs sorted by decreasing number of targets) into forward chunks.

    A chunk runs as many dense backward passes as its first (most shared) input has
    targets; rows of inputs with fewer targets are back-propagated with a zero gradient in
    the extra rounds. A chunk is closed early when that wasted work would exceed ``slack``
    of its useful backward work, so the backward cost stays within ``1 + slack`` of the
    number of (target, input) pairs while chunks stay as large as ``per_chunk`` allows.
    """
    chunk: list[int] = []
    pairs = 0
    for q in order:
        n = len(users[q])
        if chunk and (len(chunk) == per_chunk or len(users[chunk[0]]) * (len(chunk) + 1) > (1.0 + slack) * (pairs + n)):
            yield chunk
            chunk, pairs = [], 0
        chunk.append(q)
        pairs += n
    if chunk:
        yield chunk


def integrated_gradients(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    membership: torch.Tensor | None = None,
    *,
    steps: int = 50,
    method: str = "riemann_right",
    max_batch: int = 256,
    precision: str = "fp32",
) -> torch.Tensor:
    """Channel-level integrated gradients of many target neurons over many inputs, dense.

    The same numbers as :func:`integrated_gradients_pairs`, scattered into a ``[T, P, C_in]``
    tensor (zero where ``membership`` is False). Convenient for small problems and tests;
    the circuit build uses the pairs, whose memory is the number of (target, input) pairs
    rather than ``T x P``.
    """
    num_targets = int(targets.numel())
    pair_target, pair_input, attr = integrated_gradients_pairs(
        fn, inputs, targets, membership, steps=steps, method=method, max_batch=max_batch, precision=precision
    )  # [M], [M], [M, C_in]
    out = torch.zeros(num_targets, inputs.shape[0], inputs.shape[1], dtype=attr.dtype, device=attr.device)  # [T, P, C_in]
    out[pair_target, pair_input] = attr
    return out


def integrated_gradients_pairs(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    membership: torch.Tensor | None = None,
    *,
    steps: int = 50,
    method: str = "riemann_right",
    max_batch: int = 256,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channel-level integrated gradients of many target neurons over many inputs.

    For every target ``t`` and every input ``p`` it marks in ``membership``, computes the
    attribution of each input channel ``c`` to the target neuron ``y_t`` (the spatial mean of
    output channel ``targets[t]``)::

        attr[t, p, c] = sum_{h,w} x[p,c,h,w] * sum_n weight_n * d y_t(alpha_n x[p]) / d x[c,h,w]

    with a zero baseline (Eq. 2 with ``method="riemann_right"``). Summing ``attr[t, p]`` over
    channels gives ``y_t(x[p]) - y_t(0)`` up to the quadrature error (completeness).

    How it batches: the samples of a batch are independent (the segment is in eval mode),
    so the gradient of row ``i`` depends only on row ``i`` of the output gradient, and one
    backward pass can carry a *different target on every row*. Inputs are sorted by how many
    targets use them and cut into chunks; each chunk's ``N x p`` interpolated inputs go
    forward once, then backward ``r`` times, where ``r`` is the largest number of targets
    sharing one input of the chunk; round ``j`` puts the ``j``-th target of each input on its
    rows. The forward pass is shared by every target of an input; chunks are cut where the
    number of targets per input drops too much, so the backward work stays within 5% of the
    number of (target, input) pairs.

    Only the pairs ``membership`` marks are stored: memory is ``M x C_in`` for M pairs (each
    target reads its own k inputs), never ``T x P x C_in``.

    Args:
        fn: the segment ``phi^{l-1,l}``; maps ``[B, *in]`` to ``[B, C_out, *spatial]`` or
            ``[B, C_out]``; must treat batch rows independently (eval mode).
        inputs: ``[P, *in]`` lower-layer feature maps (one per patch).
        targets: ``[T]`` output channel indices.
        membership: ``[T, P]`` bool, which inputs each target integrates over (its ``V_a``);
            all of them when None.
        steps: number of quadrature nodes N.
        method: quadrature rule, see :func:`quadrature`.
        max_batch: most interpolated inputs per forward pass (the memory bound).
        precision: arithmetic of the segment's forward and backward passes, see
            :func:`ig_precision`; the interpolation, quadrature weights, ``x * grad`` and
            the stored attributions stay in the inputs' dtype.

    Returns:
        ``(pair_target [M], pair_input [M], attr [M, C_in])``: the pairs in row-major order of
        ``membership`` (by target, then input; ``torch.nonzero``'s order), on the inputs'
        device, ``attr`` in the dtype of ``inputs``.

    Raises:
        ValueError: on shape mismatches or non-finite inputs.
    """
    if inputs.dim() < 2:
        raise ValueError(f"inputs must be [P, C, ...], got shape {tuple(inputs.shape)}")
    num_targets, num_inputs = int(targets.numel()), inputs.shape[0]
    if membership is None:
        membership = torch.ones(num_targets, num_inputs, dtype=torch.bool)
    if membership.shape != (num_targets, num_inputs):
        raise ValueError(f"membership must be [{num_targets}, {num_inputs}], got {tuple(membership.shape)}")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contain NaN or infinite values")
    if precision not in IG_PRECISIONS:
        raise ValueError(f"IG precision must be one of {', '.join(IG_PRECISIONS)}, got '{precision}'")
    device, dtype, layout = inputs.device, inputs.dtype, memory_format_of(inputs)
    alphas_np, weights_np = quadrature(method, steps)
    alphas = torch.as_tensor(alphas_np, dtype=dtype, device=device)  # [N]
    weights = torch.as_tensor(weights_np, dtype=dtype, device=device)  # [N]
    member_cpu = membership.to("cpu", torch.bool)
    spatial = (1,) * (inputs.dim() - 1)

    pairs = torch.nonzero(member_cpu)  # [M, 2] (target, input), row-major
    num_pairs = len(pairs)
    pair_id = np.full((num_targets, num_inputs), -1, dtype=np.int64)  # [T, P]
    pair_id[pairs[:, 0].numpy(), pairs[:, 1].numpy()] = np.arange(num_pairs)
    channel_of = targets.to("cpu", torch.long).numpy()  # [T] output channel of each target
    out = torch.zeros(num_pairs + 1, inputs.shape[1], dtype=dtype, device=device)  # [M + 1, C_in]; row M: a sink
    users = [torch.nonzero(member_cpu[:, p]).flatten().tolist() for p in range(num_inputs)]  # targets of each input
    order = sorted((p for p in range(num_inputs) if users[p]), key=lambda p: (-len(users[p]), p))
    per_chunk = max(1, max_batch // steps)  # inputs per forward; each brings N interpolations
    for chunk in _plan_chunks(order, users, per_chunk):
        p, rounds = len(chunk), max(len(users[q]) for q in chunk)
        # Every index a chunk needs, made on the host and sent in one asynchronous copy, so
        # that a GPU never waits for the host between rounds. Round r: row i back-propagates
        # output channel chan[r, i] with gradient weight live[r, i] (0 where input i has no
        # r-th target) and its attribution goes to pair dest[r, i] (the sink row M if none).
        chan_np = np.zeros((rounds, p), dtype=np.int64)  # [R, p]
        live_np = np.zeros((rounds, p), dtype=np.float64)  # [R, p]
        dest_np = np.full((rounds, p), num_pairs, dtype=np.int64)  # [R, p]
        for i, q in enumerate(chunk):
            mine = users[q]
            n = len(mine)
            chan_np[:n, i], live_np[:n, i], dest_np[:n, i] = channel_of[mine], 1.0, pair_id[mine, q]
        idx = to_device(torch.tensor(chunk, dtype=torch.long), device)  # [p]
        chan, dest = to_device(torch.from_numpy(chan_np), device), to_device(torch.from_numpy(dest_np), device)
        live = to_device(torch.from_numpy(live_np), device, dtype)
        rows = torch.arange(p, device=device)  # [p]
        x = inputs[idx]  # [p, *in]
        scaled = (alphas.view(-1, 1, *spatial) * x.unsqueeze(0)).reshape(steps * p, *x.shape[1:])  # [N*p, *in]
        scaled = scaled.contiguous(memory_format=layout)  # keep the inputs' layout (channels_last is faster)
        scaled.requires_grad_(True)
        with torch.enable_grad(), ig_precision(precision, device):
            y = neuron_activations(fn(scaled).to(dtype))  # [N*p, C_out] (autocast may compute in bfloat16)
            for r in range(rounds):
                grad_out = torch.zeros(steps, p, y.shape[1], dtype=dtype, device=device)  # [N, p, C_out]
                grad_out[:, rows, chan[r]] = weights.view(-1, 1) * live[r]  # [N, p]: w_n on live rows, exact 0 elsewhere
                (grads,) = torch.autograd.grad(
                    y, scaled, grad_outputs=grad_out.view(steps * p, -1), retain_graph=r < rounds - 1
                )  # [N*p, *in]
                grads = grads.view(steps, p, *x.shape[1:]).sum(0)  # [p, *in]  (weights already applied)
                attr = grads * x  # [p, *in]
                attr = attr.flatten(2).sum(-1) if attr.dim() > 2 else attr  # [p, C_in]
                out[dest[r]] = attr  # [p, C_in] into their pairs (rows without a target into the sink)
        del y, scaled
    return pairs[:, 0].to(device), pairs[:, 1].to(device), out[:num_pairs]
