"""The streaming activation pass and top-k (neurflow.activations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurflow import crop_patches, make_patch_grid, split_model
from neurflow.activations import feature_maps, patch_activations, to_device, top_k
from neurflow.segments import neuron_activations

from .nets import TINY_LAYERS, tiny_cnn, tiny_images


@pytest.fixture(scope="module")
def setup():
    model = tiny_cnn()
    images = tiny_images(n=2, size=16)
    return model, split_model(model, TINY_LAYERS), images, make_patch_grid(2, 16)


def test_patch_activations_equal_spatial_means_of_every_layer(setup):
    model, split, images, grid = setup
    done = []
    acts = patch_activations(split, images, grid, batch_size=7, progress=done.append)
    assert sum(done) == len(grid) and max(done) == 7
    with torch.no_grad():
        feats = split.extractor()(crop_patches(images, grid))
    assert list(acts) == list(TINY_LAYERS)
    for name, value in acts.items():
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        assert value.shape == (len(grid), feats[name].shape[1])
        assert torch.allclose(value, neuron_activations(feats[name]).float(), rtol=1e-6, atol=1e-7)
    assert torch.allclose(acts["fc"], model(crop_patches(images, grid)).float().detach(), rtol=1e-6, atol=1e-7)


def test_patch_activations_do_not_depend_on_batch_size(setup):
    _, split, images, grid = setup
    small = patch_activations(split, images, grid, ["c2", "fc"], batch_size=5)
    large = patch_activations(split, images, grid, ["c2", "fc"], batch_size=1000)
    assert list(small) == ["c2", "fc"]
    for name in small:
        assert torch.allclose(small[name], large[name], rtol=1e-6, atol=1e-7)


def test_nan_activations_name_the_layer(setup):
    _, split, images, grid = setup
    bad = images.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite activations at layer 'c1' for \d+ of 118 patches"):
        patch_activations(split, bad, grid, ["c1"])


def test_feature_maps_of_a_few_patches(setup):
    _, split, images, grid = setup
    ids = np.array([5, 0, 100, 58])
    maps = feature_maps(split, "c2", images, grid, ids, batch_size=3)
    assert maps.shape == (4, 16, 8, 8) and maps.dtype == torch.float64
    with torch.no_grad():
        want = split.extractor(["c2"])(crop_patches(images, grid.subset(ids)))["c2"]
    assert torch.allclose(maps, want, rtol=1e-12, atol=1e-14)


def test_top_k_is_largest_first_with_ties_to_the_lower_index():
    values = torch.tensor([1.0, 3.0, 2.0, 3.0, -1.0, 3.0])
    assert top_k(values, 4).tolist() == [1, 3, 5, 2]
    assert top_k(values, 10).tolist() == [1, 3, 5, 2, 0, 4]
    assert top_k(torch.zeros(5), 3).tolist() == [0, 1, 2]
    assert top_k(values, 2).dtype == np.int64


def test_to_device_on_the_cpu_is_a_plain_copy_or_cast():
    x = torch.randn(3, 4, dtype=torch.float64)
    same = to_device(x, "cpu")
    assert same is x  # nothing to move
    cast = to_device(x, torch.device("cpu"), torch.float32)
    assert cast.dtype == torch.float32 and torch.equal(cast, x.float())
    assert not cast.is_pinned()  # pinning is for copies to a GPU only
