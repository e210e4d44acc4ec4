"""Knock-out hooks (neurflow.masking): exact zeros, and no hook left behind (captum's test_hook_removal)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from neurflow import split_model
from neurflow.masking import channel_mask, knockout, retain  # see the last test for why not `from neurflow`

from .nets import tiny_cnn, tiny_images


@pytest.fixture
def model() -> nn.Module:
    return tiny_cnn()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return tiny_images(n=2, size=16)


def _assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks, f"forward hook left on '{name}'"
        assert not module._forward_pre_hooks, f"forward pre-hook left on '{name}'"
        assert not module._backward_hooks, f"backward hook left on '{name}'"


@torch.no_grad()
def test_knockout_zeroes_exactly_the_given_channels(model, x):
    base_c1 = model.c1(x)
    base_logits = model(x)
    with knockout(model, {"c1": [1, 5]}):
        out = model.c1(x)
        logits = model(x)
    keep = [c for c in range(8) if c not in (1, 5)]
    assert torch.count_nonzero(out[:, [1, 5]]) == 0
    assert torch.count_nonzero(base_c1[:, [1, 5]]) > 0
    assert torch.equal(out[:, keep], base_c1[:, keep])
    assert not torch.allclose(logits, base_logits)
    assert torch.equal(model(x), base_logits)  # the hooks are gone
    _assert_no_hooks(model)


@torch.no_grad()
def test_retain_keeps_only_the_given_channels(model, x):
    base = model.c2(model.c1(x))
    with retain(model, {"c2": [0, 7, 15]}):
        out = model.c2(model.c1(x))
    assert torch.equal(out[:, [0, 7, 15]], base[:, [0, 7, 15]])
    others = [c for c in range(16) if c not in (0, 7, 15)]
    assert torch.count_nonzero(out[:, others]) == 0
    _assert_no_hooks(model)


@torch.no_grad()
def test_knockout_applies_inside_fx_splits_and_to_several_layers(model, x):
    split = split_model(model, ["fc", "c3", "c2", "c1"])
    base = split.extractor()(x)
    with knockout(model, {"c1": range(8), "fc": [2]}):
        feats = split.extractor()(x)
    assert torch.count_nonzero(feats["c1"]) == 0
    assert torch.count_nonzero(feats["fc"][:, 2]) == 0
    # c2 now sees a zero input: only its bias, through the ReLU
    bias = torch.relu(model.c2[0].bias).view(1, -1, 1, 1).expand_as(feats["c2"])
    assert torch.equal(feats["c2"], bias)
    assert not torch.equal(feats["c2"], base["c2"])
    _assert_no_hooks(model)


def test_no_hook_left_after_a_bad_layer_name(model, x):
    with pytest.raises(ValueError, match="unknown layer 'c9'"):
        with knockout(model, {"c1": [0], "c9": [1]}):
            pass
    _assert_no_hooks(model)
    with pytest.raises(ValueError, match="unknown layer ''"):
        with retain(model, {"": [0]}):
            pass
    _assert_no_hooks(model)


def test_no_hook_left_after_an_exception_in_the_block(model, x):
    with pytest.raises(RuntimeError, match="boom"):
        with knockout(model, {"c1": [0], "c2": [3]}):
            model(x)
            raise RuntimeError("boom")
    _assert_no_hooks(model)


def test_no_hook_left_after_an_out_of_range_channel(model, x):
    with pytest.raises(ValueError, match=r"channel indices must be in \[0, 8\), got \[2, 8\]"):
        with knockout(model, {"c1": [8, 2]}):
            model(x)
    _assert_no_hooks(model)


def test_no_hook_left_after_a_normal_run(model, x):
    with retain(model, {"c3": [1]}):
        model(x)
    with knockout(model, {}):
        model(x)
    _assert_no_hooks(model)


def test_channel_mask():
    assert channel_mask(5, [1, 3, 3]).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert channel_mask(5, [1, 3], keep=True).tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert channel_mask(3, []).tolist() == [1.0, 1.0, 1.0]
    assert channel_mask(3, [], keep=True).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"channel indices must be in \[0, 4\), got \[-1\]"):
        channel_mask(4, [-1])


@torch.no_grad()
def test_knockout_on_linear_outputs(model, x):
    with knockout(model, {"fc": [0, 3]}):
        logits = model(x)
    assert torch.count_nonzero(logits[:, [0, 3]]) == 0 and torch.count_nonzero(logits[:, [1, 2]]) == 4


def test_public_knockout_is_the_function_whatever_the_import_order():
    code = (
        "import neurflow.metrics\n"
        "from neurflow import knockout, retain\n"
        "print(type(knockout).__name__, type(retain).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["function", "function"]
