"""The patch dataset D (neurflow.patches): boxes, grid, crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurflow import PatchGrid, crop_patches, make_patch_grid
from neurflow.patches import iter_patch_batches, patch_boxes


@pytest.mark.parametrize("size", [64, 224])
def test_box_counts_per_scale(size):
    boxes = patch_boxes(size, scales=(1.0, 0.5, 0.25), stride_ratio=0.5)
    counts = {s: sum(1 for _, sc in boxes if sc == s) for s in (1.0, 0.5, 0.25)}
    assert counts == {1.0: 1, 0.5: 9, 0.25: 49}
    assert boxes[0] == ((0, 0, size, size), 1.0)
    for (x0, y0, x1, y1), scale in boxes:
        side = int(scale * size)
        assert x1 - x0 == side and y1 - y0 == side
        assert 0 <= x0 and 0 <= y0 and x1 <= size and y1 <= size
    # the 3x3 grid of half-size crops, row-major
    half = [b for b, sc in boxes if sc == 0.5]
    step = size // 4
    assert half[:4] == [(0, 0, size // 2, size // 2), (step, 0, step + size // 2, size // 2),
                        (2 * step, 0, 2 * step + size // 2, size // 2), (0, step, size // 2, step + size // 2)]
    assert half[-1] == (size // 2, size // 2, size, size)


def test_patch_grid_layout():
    grid = make_patch_grid(3, 64)
    assert len(grid) == 3 * 59
    assert np.array_equal(grid.image_index, np.repeat([0, 1, 2], 59))
    assert np.array_equal(grid.boxes[:59], grid.boxes[59:118])
    assert grid.boxes.dtype == np.int64 and grid.scales.dtype == np.float64
    sub = grid.subset([0, 59, 120])
    assert np.array_equal(sub.image_index, [0, 1, 2])
    assert sub == PatchGrid(grid.image_index[[0, 59, 120]], grid.boxes[[0, 59, 120]], grid.scales[[0, 59, 120]], 64)
    assert sub != grid
    assert make_patch_grid(3, 64) == grid


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_crop_patches_equals_manual_crop_and_resize(images):
    grid = make_patch_grid(2, 32)
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(len(grid), 25, replace=False))
    ids[0] = 0  # a whole image (scale 1: no resize)
    got = crop_patches(images, grid.subset(ids))
    assert got.shape == (25, 3, 32, 32) and got.dtype == torch.float64
    for row, p in enumerate(ids):
        x0, y0, x1, y1 = grid.boxes[p]
        crop = images[grid.image_index[p] : grid.image_index[p] + 1, :, y0:y1, x0:x1]
        want = F.interpolate(crop, size=(32, 32), mode="bilinear", align_corners=False)[0]
        assert torch.equal(got[row], want), p
    assert torch.equal(got[0], images[0])


def test_cropping_commutes_with_channel_normalisation(images):
    grid = make_patch_grid(2, 32)
    mean = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64).view(1, 3, 1, 1)
    crop_then_norm = (crop_patches(images, grid) - mean) / std
    norm_then_crop = crop_patches((images - mean) / std, grid)
    assert torch.allclose(crop_then_norm, norm_then_crop, rtol=0, atol=1e-12)


def test_iter_patch_batches_covers_the_grid_in_order(images):
    grid = make_patch_grid(2, 32)
    whole = crop_patches(images, grid)
    seen = 0
    for sl, batch in iter_patch_batches(images, grid, batch_size=17):
        assert sl.start == seen and batch.shape[0] == sl.stop - sl.start <= 17
        assert torch.equal(batch, whole[sl])
        seen = sl.stop
    assert seen == len(grid)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: patch_boxes(0), "image_size must be positive, got 0"),
        (lambda: patch_boxes(64, stride_ratio=0.0), r"stride_ratio must be in \(0, 1\], got 0.0"),
        (lambda: patch_boxes(64, stride_ratio=1.5), r"stride_ratio must be in \(0, 1\], got 1.5"),
        (lambda: patch_boxes(64, scales=(1.0, 0.0)), r"patch scales must be in \(0, 1\], got 0.0"),
        (lambda: patch_boxes(64, scales=(2.0,)), r"patch scales must be in \(0, 1\], got 2.0"),
        (lambda: make_patch_grid(0, 64), "the image set is empty"),
        (lambda: crop_patches(torch.zeros(1, 3, 16, 16), make_patch_grid(1, 32)), r"images must be 32x32, got \(16, 16\)"),
        (lambda: next(iter_patch_batches(torch.zeros(1, 3, 8, 8), make_patch_grid(1, 8), 0)), "batch_size must be positive, got 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
