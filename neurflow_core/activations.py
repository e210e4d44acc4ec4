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

__all__ = ["patch_activations", "feature_maps", "top_k"]

Progress = Callable[[int], None]


@torch.no_grad()
def patch_activations(
    split: ModelSplit,
    images: torch.Tensor,
    grid: PatchGrid,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, torch.Tensor]:
    """Spatial-mean activations of every patch at every layer, in one streaming pass.

    Args:
        split: the traced model.
        images: ``[I, C, S, S]`` preprocessed images on the compute device.
        grid: the patch dataset D.
        layers: which layers (default: all of the split's).
        batch_size: patches per forward pass; bounds the memory of the pass.
        progress: called with the number of patches done after each batch.

    Returns:
        ``{layer: [P, C_layer]}`` float32 tensors on the CPU.

    Raises:
        ValueError: if any activation is NaN or infinite (the message names the layer).
    """
    layers = list(split.layers if layers is None else layers)
    extractor = split.extractor(layers)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for sl, batch in iter_patch_batches(images, grid, batch_size):
        feats = extractor(batch)
        for name in layers:
            out[name].append(neuron_activations(feats[name]).float().cpu())
        if progress is not None:
            progress(sl.stop - sl.start)
    result = {name: torch.cat(chunks) for name, chunks in out.items()}
    for name, acts in result.items():
        bad = ~torch.isfinite(acts)
        if bad.any():
            rows = int(bad.any(1).sum())
            raise ValueError(f"NaN or infinite activations at layer '{name}' for {rows} of {acts.shape[0]} patches; check the model weights and the input preprocessing")
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
