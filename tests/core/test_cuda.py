"""The GPU path (marker ``gpu``; skipped without CUDA): circuits, reduced precision, pinned copies.

On a GPU the build must find the CPU's circuit (float64 nets: the same core sets, scores
equal to float tolerance), run its bfloat16 and TF32 integrated gradients, and feed the
model through pinned memory with the same numbers as a plain copy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurflow import build_circuit, make_patch_grid, split_model
from neurflow.activations import patch_activations, to_device
from neurflow.attribution import integrated_gradients
from neurflow.metrics import core_jaccard

from .nets import TINY_CONFIG, TINY_LAYERS, conv_bn_relu, needs_cuda, tiny_cnn, tiny_images

pytestmark = [pytest.mark.gpu, needs_cuda]


def _build(device: str, precision: str = "fp32", dtype: torch.dtype = torch.float64, cls: int = 2):
    cfg = dataclasses.replace(TINY_CONFIG, ig_precision=precision)
    return build_circuit(tiny_cnn().to(device, dtype), tiny_images().to(dtype), cls, list(TINY_LAYERS), cfg)


@pytest.mark.parametrize("cls", [0, 2])
def test_gpu_circuit_equals_the_cpu_circuit(cls):
    cpu, gpu = _build("cpu", cls=cls), _build("cuda", cls=cls)
    assert core_jaccard(cpu, gpu, per_target=True) == 1.0
    for a, b in zip(cpu.targets, gpu.targets):
        assert a.target == b.target and a.concept == b.concept and a.core == b.core
        np.testing.assert_allclose(a.all_scores, b.all_scores, rtol=1e-5, atol=1e-7)  # stored as float32


def test_float32_gpu_circuit_agrees_with_the_cpu():
    cpu = _build("cpu", dtype=torch.float32)
    gpu = _build("cuda", dtype=torch.float32)  # fp32: TF32 off, so only summation order differs
    assert core_jaccard(cpu, gpu, per_target=True) >= 0.95
    for a, b in zip(cpu.targets, gpu.targets):
        if a.target == b.target and a.concept == b.concept:
            np.testing.assert_allclose(a.all_scores, b.all_scores, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_builds_run_and_keep_the_cores(precision):
    fp32 = _build("cuda", dtype=torch.float32)
    other = _build("cuda", precision, dtype=torch.float32)
    assert other.config.ig_precision == precision
    assert core_jaccard(fp32, other) >= 0.9
    for t in other.targets:
        assert np.isfinite(t.all_scores).all()


def test_bf16_integrated_gradients_on_cuda_are_close_and_restore_tf32_flags():
    seg = conv_bn_relu().float().cuda()
    x = torch.randn(12, 4, 5, 5, generator=torch.Generator().manual_seed(1)).cuda()
    targets = torch.tensor([0, 2, 4])
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    exact = integrated_gradients(seg, x, targets, steps=8)
    for precision, tol in (("tf32", 0.01), ("bf16", 0.03)):
        approx = integrated_gradients(seg, x, targets, steps=8, precision=precision)
        assert approx.dtype == torch.float32
        assert (approx - exact).abs().max() <= tol * exact.abs().max(), precision
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags


def test_pinned_copies_give_the_same_numbers():
    host = tiny_images(n=3, size=16)
    plain = host.to("cuda")
    pinned = to_device(host, "cuda")
    torch.cuda.synchronize()
    assert pinned.device.type == "cuda" and torch.equal(pinned, plain)
    assert torch.equal(to_device(host, "cuda", torch.float32), host.float().cuda())
    # the activation pass with asynchronous copies into pinned host buffers = the same pass on the CPU
    model = tiny_cnn()
    grid = make_patch_grid(3, 16, (1.0, 0.5), 0.5)
    on_cpu = patch_activations(split_model(model, list(TINY_LAYERS)), host, grid, batch_size=4)
    on_gpu = patch_activations(split_model(model.cuda(), list(TINY_LAYERS)), plain, grid, batch_size=4)
    assert list(on_gpu) == list(on_cpu)
    for name in on_cpu:
        assert on_gpu[name].device.type == "cpu" and on_gpu[name].is_pinned()
        torch.testing.assert_close(on_gpu[name], on_cpu[name], rtol=1e-6, atol=1e-7)
