"""Streaming activation passes over the patch dataset.

One forward pass of the prefix over all patches keeps only the spatially averaged
activation of every neuron of every requested layer (``phi_a(v)`` of Definition 1 and the
representative vectors of Eq. 3). Full feature maps are recomputed later only for the few
patches that integrated gradients needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .patches import PatchGrid, crop_patches, iter_patch_batches
from .segments import ModelSplit, neuron_activations

__all__ = ["patch_activations", "feature_maps", "to_device", "top_k"]

Progress = Callable[[int], None]


def to_device(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` on ``device`` (and in ``dtype``); host-to-GPU copies go through pinned memory.

    A copy from pinned (page-locked) host memory with ``non_blocking=True`` is queued on the
    current CUDA stream and returns at once, so the host prepares the next batch while the
    GPU works; a copy from ordinary memory waits. On the CPU this is ``t.to(device, dtype)``.
    """
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        src = t if t.is_pinned() else t.pin_memory()
        return src.to(device=device, dtype=dtype, non_blocking=True)
    return t.to(device=device, dtype=dtype)


@torch.no_grad()
def patch_activations(
    split: ModelSplit,
    images: torch.Tensor,
    grid: PatchGrid,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    progress: Progress | None = None,
    keep_maps: Sequence[str] = (),
    map_budget_bytes: int = 0,
    maps_out: dict[str, torch.Tensor] | None = None,
    autocast: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Spatial-mean activations of every patch at every layer, in one streaming pass.

    Optionally the same pass also keeps the *full* feature maps of some layers, so that
    integrated gradients need not recompute the prefix for the top-k patches later.

    Args:
        split: the traced model.
        images: ``[I, C, S, S]`` preprocessed images on the compute device.
        grid: the patch dataset D.
        layers: which layers (default: all of the split's).
        batch_size: patches per forward pass; bounds the memory of the pass.
        progress: called with the number of patches done after each batch.
        keep_maps: layers (among ``layers``) whose full maps may be kept, in priority order.
        map_budget_bytes: the most bytes of kept maps; layers of ``keep_maps`` are kept in
            order while the whole layer (``len(grid)`` maps) fits.
        maps_out: receives ``{layer: [P, C, *spatial]}`` for the kept layers, on the
            device and in the dtype the forward pass produced.
        autocast: run the pass under ``torch.autocast`` with this dtype (e.g.
            ``torch.bfloat16``: about 2x faster on CPUs with AVX512-BF16 and on GPUs, at
            bfloat16's 8-bit mantissa); None keeps the model's dtype.

    Returns:
        ``{layer: [P, C_layer]}`` float32 tensors on the CPU.

    Raises:
        ValueError: if any activation is NaN or infinite (the message names the layer).
    """
    layers = list(split.layers if layers is None else layers)
    extractor = split.extractor(layers)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    # On a GPU each batch's activations go to page-locked host buffers by asynchronous
    # copies, so the pass never waits for the host; one synchronisation at the end.
    pinned: dict[str, torch.Tensor] | None = {} if images.device.type == "cuda" else None
    kept: dict[str, torch.Tensor] = {}
    for sl, batch in iter_patch_batches(images, grid, batch_size):
        with torch.autocast(batch.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            feats = extractor(batch)
        if sl.start == 0 and maps_out is not None:
            room = map_budget_bytes
            for name in (n for n in keep_maps if n in feats):
                need = len(grid) * feats[name][0].numel() * feats[name].element_size()
                if need <= room:
                    kept[name] = feats[name].new_empty(len(grid), *feats[name].shape[1:])
                    room -= need
        for name in layers:
            acts = neuron_activations(feats[name]).float()  # [b, C]
            if pinned is None:
                out[name].append(acts.cpu())
            else:
                if name not in pinned:
                    pinned[name] = torch.empty(len(grid), acts.shape[1], dtype=torch.float32, pin_memory=True)
                pinned[name][sl].copy_(acts, non_blocking=True)
        for name, buf in kept.items():
            buf[sl] = feats[name]
        if progress is not None:
            progress(sl.stop - sl.start)
    if pinned is not None:
        torch.cuda.synchronize(images.device)
        result = pinned
    else:
        result = {name: torch.cat(chunks) for name, chunks in out.items()}
    for name, acts in result.items():
        bad = ~torch.isfinite(acts)
        if bad.any():
            rows = int(bad.any(1).sum())
            raise ValueError(f"NaN or infinite activations at layer '{name}' for {rows} of {acts.shape[0]} patches; check the model weights and the input preprocessing")
    if maps_out is not None:
        maps_out.update(kept)
    return result


@torch.no_grad()
def feature_maps(split: ModelSplit, layer: str, images: torch.Tensor, grid: PatchGrid, patch_ids: np.ndarray, *, batch_size: int = 64) -> torch.Tensor:
    """Full feature maps ``phi^{1,l}(v)`` of a few patches (for integrated gradients).

    Returns:
        ``[len(patch_ids), C, *spatial]`` on the device of ``images``, in the dtype of the model.
    """
    extractor = split.extractor([layer])
    sub = grid.subset(patch_ids)
    chunks = []
    for start in range(0, len(sub), batch_size):
        part = sub.subset(np.arange(start, min(start + batch_size, len(sub))))
        chunks.append(extractor(crop_patches(images, part))[layer])
    return torch.cat(chunks)


def top_k(values: torch.Tensor, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first; ties go to the lower index.

    ``torch.topk`` does not promise an order among ties; a stable sort makes the neuron
    concept V_a (Definition 1) reproducible.
    """
    v = values.detach().cpu().double().numpy()
    k = min(k, v.shape[0])
    return np.argsort(-v, kind="stable")[:k].astype(np.int64)
