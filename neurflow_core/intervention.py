"""Interventions on a split model: channel masks multiplied into layer outputs, run through
the segments above the cut, many masks per forward pass.

This is the one masked-forward implementation of the package. Definition 2 removes a set S
of neurons from the computational graph; for a neuron that is a channel of a layer's output,
that means multiplying the output by a 0/1 channel mask. Three users share it:

* the forward hooks of :mod:`neurflow.masking` (:func:`apply_mask` on the whole model);
* the faithfulness experiments of Section 4 (:mod:`neurflow.evaluation`): knocked-out
  concepts ``V_a^{knock out S}`` (:class:`KnockoutEngine`) and masked predictions
  (:func:`masked_predictions`);
* the image debugger of Section 5.1 (:mod:`neurflow.debugging`): masked logits
  (:func:`masked_logits`).

A segment ``phi^{l-1,l}`` of :func:`neurflow.segments.split_model` reads nothing from before
its cut, so multiplying the maps at the cut by a mask and running the segments above it gives
exactly what a forward hook on the whole model gives; the maps below the cut are computed
once for every mask. Masks are folded into the batch axis: ``m`` masks of ``n`` inputs run as
one ``[m * n, ...]`` call.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import fx, nn

from .patches import PatchGrid, iter_patch_batches
from .progress import Bar
from .segments import ModelSplit, neuron_activations

__all__ = [
    "channel_mask",
    "apply_mask",
    "masks_from_sets",
    "drop_mask",
    "random_masks",
    "eval_mode",
    "to_model",
    "layer_widths",
    "layer_maps",
    "suffix",
    "masked_forward",
    "masked_logits",
    "masked_predictions",
    "stable_top_k",
    "sliced_segment",
    "KnockoutEngine",
]

Stage = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- masks


def channel_mask(num_channels: int, channels: Iterable[int], *, keep: bool = False, device: torch.device | None = None) -> torch.Tensor:
    """A ``[C]`` 0/1 mask that zeroes ``channels`` (or, with ``keep``, every other channel)."""
    idx = torch.as_tensor(sorted(set(int(c) for c in channels)), dtype=torch.long)
    if idx.numel() and (idx.min() < 0 or idx.max() >= num_channels):
        raise ValueError(f"channel indices must be in [0, {num_channels}), got {idx.tolist()}")
    mask = torch.zeros(num_channels) if keep else torch.ones(num_channels)
    mask[idx] = 1.0 if keep else 0.0
    return mask.to(device) if device is not None else mask


def apply_mask(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Every mask times every input: ``x`` ``[n, C, *spatial]``, ``masks`` ``[m, C]`` -> ``[m * n, C, *spatial]``.

    Row ``j * n + i`` is input ``i`` under mask ``j`` (masks outermost).
    """
    mk = masks.to(device=x.device, dtype=x.dtype)  # [m, C]
    m, n = mk.shape[0], x.shape[0]
    shape = (m, 1, x.shape[1]) + (1,) * (x.dim() - 2)
    return (x.unsqueeze(0) * mk.view(shape)).reshape(m * n, *x.shape[1:])  # [m * n, C, *spatial]


def masks_from_sets(sets: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """``[M, width]`` masks, mask ``i`` zeroing the channels of ``sets[i]`` (an empty set: all ones)."""
    masks = torch.ones(len(sets), width)  # [M, C]
    for i, s in enumerate(sets):
        if len(s):
            masks[i, torch.as_tensor(list(s), dtype=torch.long)] = 0.0
    return masks


def drop_mask(width: int, channels: Sequence[int], device: torch.device) -> torch.Tensor:
    """``[1, width]``: one mask zeroing ``channels``."""
    mask = torch.ones(1, width, device=device)  # [1, C]
    mask[0, torch.as_tensor(list(channels), dtype=torch.long, device=device)] = 0
    return mask


def random_masks(rng: np.random.Generator, width: int, size: int, count: int, device: torch.device) -> torch.Tensor:
    """``[count, width]`` masks, each zeroing ``size`` channels drawn without replacement."""
    chosen = np.argsort(rng.random((count, width)), axis=1)[:, :size]  # [count, size]
    mask = torch.ones(count, width, device=device)
    mask.scatter_(1, torch.as_tensor(chosen, device=device), 0.0)
    return mask


# --------------------------------------------------------------------------- model helpers


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the context, its previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def to_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the model's device and in its dtype (unchanged for a model without parameters)."""
    param = next(model.parameters(), None)
    return x if param is None else x.to(device=param.device, dtype=param.dtype)


@torch.no_grad()
def layer_widths(split: ModelSplit, images: torch.Tensor) -> dict[str, int]:
    """Channels of every layer of the split (one forward pass of one image)."""
    feats = split.extractor()(images[:1])
    return {name: int(out.shape[1]) for name, out in feats.items()}


@torch.no_grad()
def layer_maps(split: ModelSplit, layer: str, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """``[n, C, *spatial]`` outputs of ``layer`` for ``images``, computed ``batch`` at a time."""
    if not len(images):
        return images.new_zeros(0)
    ex = split.extractor([layer])
    return torch.cat([ex(images[i : i + batch])[layer] for i in range(0, len(images), batch)])


def _stages(split: ModelSplit, layer: str) -> list[tuple[str, Stage]]:
    """``(upper layer, segment)`` from ``layer`` up to the logit layer, lowest first."""
    return [(up, split.segment(up)) for up in reversed(split.layers[: split.layers.index(layer)])]


def suffix(split: ModelSplit, layer: str) -> Stage:
    """A function from ``layer``'s output to the logits, chaining the segments above it."""
    chain = [seg for _, seg in _stages(split, layer)]

    def run(x: torch.Tensor) -> torch.Tensor:
        for seg in chain:
            x = seg(x)
        return x

    return run


# --------------------------------------------------------------------------- masked forwards


@torch.no_grad()
def masked_forward(
    stages: Sequence[Stage],
    feats: torch.Tensor,
    masks: Sequence[torch.Tensor | None],
    *,
    per_call: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``feats`` through ``stages`` under many masks, ``per_call`` masks per call.

    Args:
        stages: functions applied in order (segments from the cut upward).
        feats: ``[n, C, *spatial]`` maps at the cut.
        masks: ``len(stages) + 1`` entries: ``masks[0]`` ``[J, C]`` multiplies ``feats``,
            ``masks[i]`` the output of ``stages[i - 1]``; None leaves that point unmasked.
            At least one entry is a tensor (it sets J).
        per_call: masks per call (the call's batch is ``per_call * n``).
        reduce: applied to each call's ``[m * n, ...]`` output before it is kept (e.g. to
            keep only some channels), so the full outputs never pile up.

    Returns:
        ``[J, n, ...]`` the (reduced) output of the last stage under each mask.
    """
    if len(masks) != len(stages) + 1:
        raise ValueError(f"need one mask entry per stage input plus the output ({len(stages) + 1}), got {len(masks)}")
    n_jobs = next(m.shape[0] for m in masks if m is not None)
    n = feats.shape[0]
    out = []
    for j0 in range(0, n_jobs, max(1, per_call)):
        j1 = min(n_jobs, j0 + max(1, per_call))
        m = j1 - j0
        x = apply_mask(feats, masks[0][j0:j1]) if masks[0] is not None else feats.repeat(m, *([1] * (feats.dim() - 1)))  # [m * n, C, *spatial]
        for i, stage in enumerate(stages):
            x = stage(x)  # [m * n, C_i, *spatial]
            mk = masks[i + 1]
            if mk is not None:
                x = (x.view(m, n, *x.shape[1:]) * mk[j0:j1].to(device=x.device, dtype=x.dtype).view(m, 1, -1, *([1] * (x.dim() - 2)))).view_as(x)
        if reduce is not None:
            x = reduce(x)
        out.append(x.reshape(m, n, *x.shape[1:]))  # [m, n, ...]
    return torch.cat(out)


@torch.no_grad()
def masked_logits(suffix: Stage, feats: torch.Tensor, masks: torch.Tensor, batch_bytes: int) -> torch.Tensor:
    """Logits of ``feats`` under each of ``masks`` (the debugger's masked forward).

    Args:
        suffix: from the maps at the cut to the logits (:func:`suffix`).
        feats: ``[n, C, *spatial]`` feature maps at the layer.
        masks: ``[b, C]`` 0/1 channel masks.
        batch_bytes: the most bytes of masked maps in one call.

    Returns:
        ``[b, n, K]``.
    """
    n = feats.shape[0]
    if n == 0:
        return feats.new_zeros(masks.shape[0], 0, 0)
    per_mask = feats[0].numel() * feats.element_size() * n
    return masked_forward([suffix], feats, [masks, None], per_call=max(1, batch_bytes // max(per_mask, 1)))


@torch.no_grad()
def masked_predictions(
    split: ModelSplit,
    start: str,
    images: torch.Tensor,
    masks: dict[str, torch.Tensor],
    *,
    batch_size: int,
    max_batch: int,
    bar: Bar | None = None,
) -> torch.Tensor:
    """Predicted classes with channel masks multiplied into layer outputs, for many mask sets.

    The output of ``start`` is computed once per batch of images (the prefix), then the
    segments run upward to the logit layer, each layer's output multiplied by its mask:
    the same as forward hooks on the whole model (:func:`neurflow.masking.knockout` /
    :func:`~neurflow.masking.retain`), since no segment reads anything from before its cut.

    Args:
        start: the lowest layer that carries a mask.
        masks: ``{layer: [J, C_layer]}`` 0/1 masks of every job, for ``start`` and any
            layers above it (a layer missing from the dict is not masked).
        batch_size: images per prefix call.
        max_batch: inputs per segment call.

    Returns:
        ``[J, N]`` predicted class indices (argmax of the logit layer), on the CPU.
    """
    n_jobs = next(iter(masks.values())).shape[0]
    chain = _stages(split, start)
    stages = [seg for _, seg in chain]
    points = [start] + [up for up, _ in chain]
    extractor = split.extractor([start])
    preds = torch.empty(n_jobs, images.shape[0], dtype=torch.long)
    for b0 in range(0, images.shape[0], batch_size):
        feats = extractor(images[b0 : b0 + batch_size])[start]  # [b, C, *spatial]
        b = feats.shape[0]
        logits = masked_forward(stages, feats, [masks.get(p) for p in points], per_call=max(1, max_batch // b))  # [J, b, K]
        preds[:, b0 : b0 + b] = logits.reshape(n_jobs, b, -1).argmax(-1).cpu()
        if bar is not None:
            bar.update(b)
    return preds


# --------------------------------------------------------------------------- knocked-out concepts


_CHANNELWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)


def _sliced_param(value: torch.Tensor | None, idx: torch.Tensor) -> nn.Parameter | None:
    return None if value is None else nn.Parameter(value.detach().index_select(0, idx), requires_grad=False)


def _slice_module(module: nn.Module, idx: torch.Tensor) -> nn.Module | None:
    """A copy of ``module`` computing only output channels ``idx``; None when it cannot be sliced.

    Channel-mixing modules (a dense conv, a linear layer) keep the rows ``idx`` of their
    weight; batch norm in eval mode keeps those channels' statistics; parameter-free
    channel-wise modules are returned as they are. Anything else (a grouped conv, a module
    that mixes channels in a way not listed here) gives None.
    """
    n = int(idx.numel())
    if _is_mixing(module) or isinstance(module, nn.modules.batchnorm._BatchNorm):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _is_channelwise(module):
            return None
        new = copy.copy(module)
        new._parameters = {name: _sliced_param(p, idx) for name, p in module._parameters.items()}
        new._buffers = {name: (b.index_select(0, idx) if name in ("running_mean", "running_var") and b is not None else b) for name, b in module._buffers.items()}
        for attr in ("out_channels", "out_features", "num_features"):
            if hasattr(new, attr):
                setattr(new, attr, n)
        return new
    return module if type(module) in _CHANNELWISE else None


def _is_mixing(module: nn.Module) -> bool:
    """A dense conv or a linear layer: every output channel reads every input channel."""
    conv = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.groups == 1
    return conv or type(module) is nn.Linear


def _is_channelwise(module: nn.Module) -> bool:
    """Output channel c depends on input channel c only (batch norm only in eval mode)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return not module.training and module.running_mean is not None
    return type(module) in _CHANNELWISE


def _slice_tail(module: nn.Module, idx: torch.Tensor) -> nn.Module | None:
    """``module`` computing only output channels ``idx``: a sliced dense conv or linear layer,
    or an ``nn.Sequential`` whose last channel-mixing child is followed only by channel-wise
    ones (that child and those after it sliced); None otherwise."""
    if not isinstance(module, nn.Sequential):
        return _slice_module(module, idx) if _is_mixing(module) else None
    children = list(module)
    for i in range(len(children) - 1, -1, -1):
        head = _slice_tail(children[i], idx)
        if head is not None:
            tail = [_slice_module(c, idx) for c in children[i + 1 :]]
            if any(t is None for t in tail):
                return None
            return nn.Sequential(*children[:i], head, *[t for t in tail if t is not None])
        if not _is_channelwise(children[i]):
            return None
    return None


def sliced_segment(segment: fx.GraphModule, channels: Sequence[int]) -> fx.GraphModule | None:
    """The segment computing only ``channels`` of the upper layer's output, or None.

    The segment's last node must be a call of the upper layer's module, and that module a
    dense conv or linear layer, or an ``nn.Sequential`` that ends in one followed only by
    channel-wise modules (batch norm in eval mode, activations, pooling, dropout): then only
    the rows ``channels`` of the last conv's weight are needed, and the rest of the output
    is never computed. Output ``[n, len(channels), *spatial]``, channels in the given order;
    each is what the full segment computes for it up to the order of floating-point sums.
    """
    out = next(n for n in segment.graph.nodes if n.op == "output")
    last = out.args[0]
    if not isinstance(last, fx.Node) or last.op != "call_module":
        return None
    module = segment.get_submodule(str(last.target))
    param = next(module.parameters(), None)
    idx = torch.as_tensor([int(c) for c in channels], dtype=torch.long, device=None if param is None else param.device)
    sliced = _slice_tail(module, idx)
    if sliced is None:
        return None
    graph = copy.deepcopy(segment.graph)
    gm = fx.GraphModule(segment, graph)
    node = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    gm.add_submodule("_sliced_upper", sliced)
    node.target = "_sliced_upper"
    gm.recompile()
    return gm


def stable_top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Row-wise indices of the ``k`` largest values, largest first; ties go to the lower index.

    The same order as :func:`neurflow.activations.top_k` on each row (a stable sort of the
    negated values; negation and float32 -> float64 are exact).

    Args:
        values: ``[M, P]``.

    Returns:
        ``[M, min(k, P)]`` int64.
    """
    k = min(int(k), values.shape[1])
    return torch.sort(-values, dim=1, stable=True).indices[:, :k]


class KnockoutEngine:
    """``phi_a`` over the patch dataset D with sets of the layer below knocked out (Definition 2).

    For one layer transition ``lower -> upper``: the maps of D at ``lower`` are computed once
    and kept for every later call (when they fit ``cache_bytes``; else recomputed per batch
    of patches for every pass), then the knocked-out sets run through the segment
    ``phi^{lower,upper}``, many sets folded into one call. Where the upper layer ends in a
    dense conv or linear layer followed only by channel-wise modules
    (:func:`sliced_segment`), the segment is cut down to the one channel a row is read on and
    each target's rows run on their own: the other upper channels, which Definition 2 never
    reads, are not computed. Otherwise one forward serves every target of the transition. In
    both cases a set asked for twice for the same forward runs once. Activations of a chunk
    of sets are reduced to their top-k (:func:`stable_top_k`) before the next chunk runs.

    ``batched=False`` is the straightforward engine, kept as a reference for the tests and
    the benchmark: every (target, set) pair is its own row, the prefix runs for every batch
    of patches, every upper channel is computed and one is read. Both give the same
    activations up to the order of floating-point sums in a sliced conv or linear layer
    (the tests compare them). Rows are computed input by input (no statistic across a call),
    and the tests check that results do not depend on batch sizes, chunking, the map cache
    or the order of rows.

    Args:
        split: a split of the model at the circuit's layers (model in eval mode).
        upper: the layer of the target neurons.
        images: ``[I, C, S, S]`` the class images D_c, on the model's device and dtype.
        grid: the patch grid of D.
        batch_size: patches per prefix call.
        max_batch: inputs per segment call.
        cache_bytes: the most bytes of cached lower maps.
        chunk_bytes: the most bytes of activations computed before their top-k is taken.
        batched: False for the reference engine.
    """

    def __init__(
        self,
        split: ModelSplit,
        upper: str,
        images: torch.Tensor,
        grid: PatchGrid,
        *,
        batch_size: int = 64,
        max_batch: int = 512,
        cache_bytes: int = 1 << 30,
        chunk_bytes: int = 256 << 20,
        batched: bool = True,
    ) -> None:
        self.split = split
        self.upper = upper
        self.lower = split.lower_of(upper)
        self.images = images
        self.grid = grid
        self.batch_size = int(batch_size)
        self.max_batch = int(max_batch)
        self.cache_bytes = int(cache_bytes)
        self.chunk_bytes = int(chunk_bytes)
        self.batched = bool(batched)
        self.segment = split.segment(upper)
        self._prefix = split.extractor([self.lower])
        self._maps: list[tuple[slice, torch.Tensor]] | None = None
        self._sliced: dict[int, fx.GraphModule | None] = {}

    def _batches(self) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(slice of D, [b, C, *spatial] lower maps)`` in grid order; cached after one pass when they fit."""
        if self._maps is not None:
            yield from self._maps
            return
        kept: list[tuple[slice, torch.Tensor]] | None = [] if self.batched else None
        size = 0
        with torch.no_grad():
            for sl, batch in iter_patch_batches(self.images, self.grid, self.batch_size):
                feats = self._prefix(batch)[self.lower]  # [b, C, *spatial]
                if kept is not None:
                    size += feats.numel() * feats.element_size()
                    if size <= self.cache_bytes:
                        kept.append((sl, feats))
                    else:
                        kept = None
                yield sl, feats
        if kept is not None:
            self._maps = kept

    @torch.no_grad()
    def activations(self, sets: Sequence[Sequence[int]], targets: Sequence[int], *, bar: Bar | None = None) -> torch.Tensor:
        """``[M, P]`` float32 on the CPU: target ``targets[m]`` over D with ``sets[m]`` knocked out.

        Args:
            sets: channels of the lower layer to zero, one collection per row (empty: nothing).
            targets: the upper-layer channel each row is read on.
            bar: updated with the number of patches done (one pass over D in all).
        """
        out = torch.empty(len(sets), len(self.grid), dtype=torch.float32)
        for rows, acts in self._chunks(sets, targets, bar):
            out[rows] = acts
        return out

    def concepts(self, sets: Sequence[Sequence[int]], targets: Sequence[int], k: int, *, bar: Bar | None = None) -> np.ndarray:
        """``[M, k]`` patch ids of ``V_a^{knock out S}`` per row, highest activation first.

        Rows are computed a chunk of sets at a time (``chunk_bytes`` of activations), so the
        ``[M, P]`` activations of every row are never held at once.
        """
        k = min(int(k), len(self.grid))
        out = np.zeros((len(sets), k), dtype=np.int64)
        for rows, acts in self._chunks(sets, targets, bar):
            out[rows.numpy()] = stable_top_k(acts, k).numpy()
        return out

    def _groups(self, targets: Sequence[int]) -> list[tuple[list[int], Stage, list[int]]]:  # (rows, segment, channels)
        """``(rows, segment, channels read)``: how the rows are run.

        When the upper layer ends in a channel-mixing module followed only by channel-wise
        ones (conv -> batch norm -> ReLU -> pool, a linear layer), the segment is sliced to
        one target channel and each target's rows run alone: the other output channels are
        never computed. Otherwise one group reads every target from the full segment.
        """
        channels = sorted({int(t) for t in targets})
        if self.batched:
            per_target: list[tuple[list[int], Stage, list[int]]] = []
            for c in channels:
                seg = self._sliced.get(c)
                if seg is None and c not in self._sliced:
                    seg = self._sliced[c] = sliced_segment(self.segment, [c])
                if seg is None:
                    break
                per_target.append(([i for i, t in enumerate(targets) if int(t) == c], seg, [0]))
            else:
                return per_target
        return [(list(range(len(targets))), self.segment, channels)]

    def _chunks(self, sets: Sequence[Sequence[int]], targets: Sequence[int], bar: Bar | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(row indices [r], activations [r, P])`` covering every row once."""
        if len(sets) != len(targets):
            raise ValueError(f"{len(sets)} sets but {len(targets)} targets")
        if not len(sets):
            return
        if not self.batched:
            yield torch.arange(len(sets)), self._reference(sets, targets, bar)
            return
        n_patches = len(self.grid)
        keys = [tuple(sorted({int(c) for c in s})) for s in sets]
        plan = []  # (rows, segment, channels, unique sets, row -> unique, row -> channel column)
        for group, seg, channels in self._groups(targets):
            unique = list(dict.fromkeys(keys[r] for r in group))  # first-seen order
            row_of = {key: i for i, key in enumerate(unique)}
            col_of = {c: i for i, c in enumerate(channels)}
            key_row = torch.as_tensor([row_of[keys[r]] for r in group], dtype=torch.long)  # [r]
            key_col = torch.as_tensor([col_of[int(targets[r])] if len(channels) > 1 else 0 for r in group], dtype=torch.long)  # [r]
            plan.append((torch.as_tensor(group, dtype=torch.long), seg, channels, unique, key_row, key_col))
        passes = [(i, u0) for i, (_, _, channels, unique, _, _) in enumerate(plan)
                  for u0 in range(0, len(unique), max(1, self.chunk_bytes // max(1, n_patches * len(channels) * 4)))]
        done = 0
        for p, (g, u0) in enumerate(passes):
            rows, seg, channels, unique, key_row, key_col = plan[g]
            per_chunk = max(1, self.chunk_bytes // max(1, n_patches * len(channels) * 4))
            u1 = min(len(unique), u0 + per_chunk)
            acts = torch.empty(u1 - u0, n_patches, len(channels), dtype=torch.float32)  # [U_c, P, T]
            masks: torch.Tensor | None = None
            for sl, feats in self._batches():
                if masks is None:
                    masks = masks_from_sets(unique[u0:u1], feats.shape[1])  # [U_c, C]
                idx = torch.as_tensor(channels, dtype=torch.long, device=feats.device)
                b = feats.shape[0]
                reduce = neuron_activations if seg is not self.segment else (lambda y, idx=idx: neuron_activations(y).index_select(1, idx))
                acts[:, sl] = masked_forward([seg], feats, [masks, None], per_call=max(1, self.max_batch // b), reduce=reduce).float().cpu()  # [U_c, b, T]
                if bar is not None:  # one pass over D in all, spread over the passes
                    now = (p * n_patches + sl.stop) // len(passes)
                    bar.update(now - done)
                    done = now
            inside = torch.nonzero((key_row >= u0) & (key_row < u1)).flatten()  # [r']
            yield rows[inside], acts[key_row[inside] - u0, :, key_col[inside]]  # [r', P]

    def _reference(self, sets: Sequence[Sequence[int]], targets: Sequence[int], bar: Bar | None) -> torch.Tensor:
        """The straightforward engine: one row per (target, set), the prefix per batch of patches."""
        masks = None
        n_masks = len(sets)
        tgt = torch.as_tensor([int(t) for t in targets], dtype=torch.long)
        out = torch.empty(n_masks, len(self.grid), dtype=torch.float32)
        for sl, feats in self._batches():
            if masks is None:
                masks = masks_from_sets(sets, feats.shape[1])
            b = feats.shape[0]
            per = max(1, self.max_batch // b)
            for m0 in range(0, n_masks, per):
                m = min(per, n_masks - m0)
                y = neuron_activations(self.segment(apply_mask(feats, masks[m0 : m0 + m]))).view(m, b, -1)  # [m, b, C_upper]
                idx = tgt[m0 : m0 + m].to(y.device).view(m, 1, 1).expand(m, b, 1)  # [m, b, 1]
                out[m0 : m0 + m, sl] = y.gather(2, idx).squeeze(2).float().cpu()  # [m, b]
            if bar is not None:
                bar.update(b)
        return out
