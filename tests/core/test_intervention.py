"""The shared masked forwards (neurflow.intervention): the batched knock-out engine against
the straightforward one and against hooks on the whole model, on small float64 nets built by
hand (one whose upper layers slice to a target channel, one with a residual block that does
not), independent of how sets are batched; segment slicing; the masked forwards."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from neurflow.activations import top_k
from neurflow.intervention import (
    KnockoutEngine,
    apply_mask,
    channel_mask,
    masked_forward,
    masked_logits,
    masks_from_sets,
    sliced_segment,
    stable_top_k,
    suffix,
)
from neurflow.masking import knockout
from neurflow.metrics import knockout_concepts
from neurflow.patches import make_patch_grid
from neurflow.segments import neuron_activations, split_model

from .nets import tiny_cnn, tiny_images


class Residual(nn.Module):
    """x + conv(x): a layer that mixes channels through a skip (cannot be sliced)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv(x))


def bn_net(seed: int = 0) -> nn.Sequential:
    """conv-BN-ReLU-maxpool blocks like the demo CNN, a residual block, and a linear head (float64)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        OrderedDict(
            b1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)),
            b2=nn.Sequential(nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2)),
            res=Residual(12),
            b3=nn.Sequential(nn.Conv2d(12, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(10, 5),
        )
    )
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.double().eval()


BN_LAYERS = ("fc", "b3", "res", "b2", "b1")


def _jobs(width: int, targets: list[int], seed: int) -> tuple[list[tuple[int, ...]], list[int]]:
    """Per target: nothing knocked out, every singleton, random sets; the same sets for two targets."""
    rng = np.random.default_rng(seed)
    sets, owners = [], []
    for t in targets:
        cand = [()] + [(c,) for c in range(width)] + [tuple(int(c) for c in rng.choice(width, size=int(rng.integers(2, width)), replace=False)) for _ in range(6)]
        sets += cand
        owners += [t] * len(cand)
    return sets, owners


@pytest.fixture(scope="module")
def bn_setup():
    model = bn_net()
    images = tiny_images(seed=3, n=3, size=16)
    grid = make_patch_grid(len(images), 16, (1.0, 0.5), 0.5)
    return model, images, grid, split_model(model, list(BN_LAYERS))


@pytest.mark.parametrize("upper", ["fc", "b3", "res", "b2"])
def test_batched_engine_equals_the_straightforward_one(bn_setup, upper):
    """Activations of every (set, target) row agree, and so do the top-k concepts."""
    model, images, grid, split = bn_setup
    lower = split.lower_of(upper)
    width = split.extractor([lower])(images[:1])[lower].shape[1]
    n_up = split.extractor([upper])(images[:1])[upper].shape[1]
    sets, owners = _jobs(width, [0, n_up - 1, 2], seed=1)
    ref = KnockoutEngine(split, upper, images, grid, batch_size=5, max_batch=16, batched=False)
    fast = KnockoutEngine(split, upper, images, grid, batch_size=5, max_batch=16)
    want = ref.activations(sets, owners)
    got = fast.activations(sets, owners)
    assert got.shape == want.shape == (len(sets), len(grid))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fast.concepts(sets, owners, 7), ref.concepts(sets, owners, 7))
    # a layer that ends in conv/linear + channel-wise modules runs only the target's channel
    assert (sliced_segment(split.segment(upper), [0]) is None) == (upper == "res")


def test_batched_engine_equals_hooks_on_the_whole_model(bn_setup):
    """Definition 2 with forward hooks (neurflow.metrics.knockout_concepts) gives the same V_a."""
    model, images, grid, split = bn_setup
    engine = KnockoutEngine(split, "b3", images, grid, batch_size=4, max_batch=9)
    sets, owners = [(), (1, 4), (0, 2, 3, 7, 11), (5,)], [3, 3, 0, 9]
    got = engine.concepts(sets, owners, 6)
    for row, (s, t) in enumerate(zip(sets, owners)):
        want = knockout_concepts(model, split, images, grid, "b3", [t], {"res": s}, 6)[0]
        np.testing.assert_array_equal(got[row], want)


def test_results_do_not_depend_on_batching(bn_setup):
    """Batch sizes, segment-call sizes, chunking of the top-k, the map cache and the order of
    rows change nothing: every input's arithmetic is done alone."""
    model, images, grid, split = bn_setup
    sets, owners = _jobs(12, [1, 4], seed=2)
    base = KnockoutEngine(split, "b3", images, grid).activations(sets, owners)
    for kw in ({"batch_size": 1, "max_batch": 1}, {"batch_size": 7, "max_batch": 50}, {"chunk_bytes": 1}, {"cache_bytes": 0}, {"batch_size": 3, "chunk_bytes": 3 * len(grid) * 4}):
        other = KnockoutEngine(split, "b3", images, grid, **kw).activations(sets, owners)
        assert torch.equal(other, base), kw
    perm = np.random.default_rng(0).permutation(len(sets))
    shuffled = KnockoutEngine(split, "b3", images, grid).activations([sets[i] for i in perm], [owners[i] for i in perm])
    assert torch.equal(shuffled, base[torch.as_tensor(perm)])


def test_lower_maps_are_computed_once_and_reused(bn_setup):
    model, images, grid, split = bn_setup
    engine = KnockoutEngine(split, "b3", images, grid, batch_size=4)
    calls = []
    prefix = engine._prefix
    engine._prefix = lambda x: calls.append(len(x)) or prefix(x)
    a = engine.activations([(), (2,)], [0, 0])
    b = engine.activations([(2,), ()], [0, 1])
    assert sum(calls) == len(grid)  # one pass over D for both calls
    assert torch.equal(a[1], b[0])
    ref = KnockoutEngine(split, "b3", images, grid, batch_size=4, batched=False)
    ref_calls = []
    ref_prefix = ref._prefix
    ref._prefix = lambda x: ref_calls.append(len(x)) or ref_prefix(x)
    ref.activations([(), (2,)], [0, 0])
    ref.activations([(), (2,)], [0, 0])
    assert sum(ref_calls) == 2 * len(grid)  # the reference recomputes the prefix every time


def test_progress_counts_one_pass_over_d(bn_setup):
    model, images, grid, split = bn_setup

    class Count:
        n = 0

        def update(self, n: int = 1) -> None:
            Count.n += n

    sets, owners = _jobs(12, [1, 4, 6], seed=3)
    KnockoutEngine(split, "b3", images, grid, chunk_bytes=5 * len(grid) * 4).concepts(sets, owners, 5, bar=Count())
    assert Count.n == len(grid)


def test_engine_checks_its_arguments(bn_setup):
    model, images, grid, split = bn_setup
    engine = KnockoutEngine(split, "b3", images, grid)
    with pytest.raises(ValueError, match="2 sets but 1 targets"):
        engine.activations([(), (1,)], [0])
    assert engine.concepts([], [], 5).shape == (0, 5)


def test_stable_top_k_equals_numpy_stable_argsort():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 6, (9, 40), generator=g).float()  # many ties
    got = stable_top_k(values, 12)
    for row in range(values.shape[0]):
        np.testing.assert_array_equal(got[row].numpy(), top_k(values[row], 12))
    assert stable_top_k(values, 99).shape == (9, 40)


def test_sliced_segment_computes_the_chosen_channels():
    model = bn_net(seed=4)
    split = split_model(model, list(BN_LAYERS))
    x = tiny_images(seed=1, n=4, size=16)
    for upper in ("fc", "b3", "b2"):
        lower = split.lower_of(upper)
        feats = split.extractor([lower])(x)[lower]
        full = split.segment(upper)(feats)
        chans = [3, 0, 1]
        part = sliced_segment(split.segment(upper), chans)
        torch.testing.assert_close(part(feats), full[:, chans], rtol=1e-12, atol=1e-12)
    assert sliced_segment(split.segment("res"), [0]) is None  # the skip reads every channel
    train = bn_net(seed=4).train()  # batch norm in training mode uses batch statistics: not channel-wise here
    assert sliced_segment(split_model(train, list(BN_LAYERS)).segment("b3"), [0]) is None


def test_masked_forward_masks_every_point_like_hooks():
    """Masks at the cut and at a layer above it = knockout hooks on both layers."""
    model = tiny_cnn()
    x = tiny_images(seed=2, n=5)
    split = split_model(model, ["fc", "c3", "c2"])
    feats = split.extractor(["c2"])(x)["c2"]
    m_c2 = masks_from_sets([(), (1, 2), (0,)], 16).double()
    m_c3 = masks_from_sets([(4,), (), (3, 5, 7)], 16).double()
    got = masked_forward([split.segment("c3"), split.segment("fc")], feats, [m_c2, m_c3, None], per_call=2)  # [3, 5, 4]
    for j, (s2, s3) in enumerate([((), (4,)), ((1, 2), ()), ((0,), (3, 5, 7))]):
        with contextlib.ExitStack() as stack, torch.no_grad():
            stack.enter_context(knockout(model, {"c2": s2}))
            stack.enter_context(knockout(model, {"c3": s3}))
            torch.testing.assert_close(got[j], model(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one mask entry per stage"):
        masked_forward([split.segment("c3")], feats, [m_c2], per_call=1)


def test_apply_mask_folds_masks_into_the_batch():
    x = torch.arange(2 * 3 * 2, dtype=torch.float64).view(2, 3, 2)
    masks = torch.stack([channel_mask(3, [1]), channel_mask(3, [0, 2], keep=True)])
    y = apply_mask(x, masks).view(2, 2, 3, 2)
    assert torch.equal(y[0, 1], x[1] * torch.tensor([1.0, 0.0, 1.0]).view(3, 1))
    assert torch.equal(y[1, 0], x[0] * torch.tensor([1.0, 0.0, 1.0]).view(3, 1))
    with pytest.raises(ValueError, match="channel indices"):
        channel_mask(3, [3])


def test_masked_logits_equal_the_suffix_under_each_mask():
    model = tiny_cnn()
    x = tiny_images(seed=4, n=3)
    split = split_model(model, ["fc", "c3", "c2"])
    feats = split.extractor(["c2"])(x)["c2"]
    masks = masks_from_sets([(0,), (2, 3), ()], 16).double()
    got = masked_logits(suffix(split, "c2"), feats, masks, batch_bytes=1)  # one mask per call
    with torch.no_grad():
        for j in range(3):
            torch.testing.assert_close(got[j], model(x) if j == 2 else suffix(split, "c2")(feats * masks[j].view(1, -1, 1, 1)), rtol=0, atol=0)
    assert masked_logits(suffix(split, "c2"), feats[:0], masks, 1 << 20).shape == (3, 0, 0)
    assert neuron_activations(feats).shape == (3, 16)
