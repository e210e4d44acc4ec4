"""Memory layout (neurflow.layout): channels_last during a build changes speed, not results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurflow.attribution import _plan_chunks, integrated_gradients
from neurflow.layout import channels_last, memory_format_of
from neurflow.patches import crop_patches, make_patch_grid

from .nets import conv_bn_relu, tiny_cnn, tiny_images


def _is_nhwc(t: torch.Tensor) -> bool:
    return memory_format_of(t) == torch.channels_last


def test_channels_last_switches_and_restores_the_model():
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with channels_last(model) as switched:
        assert switched
        assert all(_is_nhwc(p) for p in model.parameters() if p.dim() == 4)
    assert all(p.is_contiguous() for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_channels_last_restores_after_an_error():
    model = tiny_cnn()
    with pytest.raises(RuntimeError, match="boom"):
        with channels_last(model):
            raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in model.parameters())


def test_channels_last_leaves_other_models_alone():
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with channels_last(mlp) as switched:
        assert not switched
    nhwc = tiny_cnn().to(memory_format=torch.channels_last)
    with channels_last(nhwc) as switched:
        assert not switched
    assert all(_is_nhwc(p) for p in nhwc.parameters() if p.dim() == 4)  # still the user's layout
    with channels_last(tiny_cnn(), enabled=False) as switched:
        assert not switched


def test_memory_format_of():
    x = torch.randn(2, 3, 4, 5)
    assert memory_format_of(x) == torch.contiguous_format
    assert memory_format_of(x.contiguous(memory_format=torch.channels_last)) == torch.channels_last
    assert memory_format_of(torch.randn(2, 3)) == torch.contiguous_format
    # a 1x1 map is both layouts at once: treated as contiguous
    assert memory_format_of(torch.randn(2, 3, 1, 1).contiguous(memory_format=torch.channels_last)) == torch.contiguous_format


def test_crop_patches_keeps_the_layout_and_the_values():
    images = tiny_images(n=3, size=16)
    grid = make_patch_grid(3, 16, (1.0, 0.5, 0.25), 0.5)
    plain = crop_patches(images, grid)
    nhwc = crop_patches(images.contiguous(memory_format=torch.channels_last), grid)
    assert _is_nhwc(nhwc) and not _is_nhwc(plain)
    assert torch.allclose(plain, nhwc, rtol=0, atol=1e-6)


def test_integrated_gradients_on_channels_last_inputs_equal_contiguous_ones():
    seg = conv_bn_relu()
    torch.manual_seed(3)
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    targets = torch.tensor([0, 2, 3])
    plain = integrated_gradients(seg, x, targets, steps=8)
    seg_nhwc = conv_bn_relu().to(memory_format=torch.channels_last)
    nhwc = integrated_gradients(seg_nhwc, x.contiguous(memory_format=torch.channels_last), targets, steps=8)
    assert torch.allclose(plain, nhwc, rtol=1e-10, atol=1e-12)
    assert plain.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunk_plan_bounds_the_backward_waste(seed):
    """Every input once, chunks within per_chunk, and the dense backward rows of a chunk
    (its first input's target count x its size) within 5% of its (target, input) pairs,
    unless the chunk holds one input."""
    rng = np.random.default_rng(seed)
    users = [list(range(int(n))) for n in rng.integers(1, 40, size=300)]
    order = sorted(range(len(users)), key=lambda p: (-len(users[p]), p))
    chunks = list(_plan_chunks(order, users, per_chunk=25))
    assert [q for c in chunks for q in c] == order
    for chunk in chunks:
        assert 1 <= len(chunk) <= 25
        pairs = sum(len(users[q]) for q in chunk)
        rows = len(users[chunk[0]]) * len(chunk)
        assert len(chunk) == 1 or rows <= 1.05 * pairs
    total_rows = sum(len(users[c[0]]) * len(c) for c in chunks)
    total_pairs = sum(len(u) for u in users)
    print(f"backward rows {total_rows} for {total_pairs} (target, input) pairs: {total_rows / total_pairs:.3f}x")
    assert total_rows <= 1.05 * total_pairs
