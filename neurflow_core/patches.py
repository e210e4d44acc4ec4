"""The patch dataset D (Section 3.3): crops of the class's images at several granularities.

Patches are described by boxes, not pixels: a :class:`PatchGrid` lists, for every patch,
the image it comes from, its crop box and its scale. Pixels are cut and resized on demand,
batch by batch, so memory is bounded by the batch size rather than by ``|D|``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .layout import memory_format_of

__all__ = ["PatchGrid", "patch_boxes", "make_patch_grid", "crop_patches", "iter_patch_batches"]


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """Boxes of every patch in D.

    Attributes:
        image_index: ``[P]`` int64, index of the source image in the image list.
        boxes: ``[P, 4]`` int64 ``(x0, y0, x1, y1)`` in pixels of the preprocessed image
            (``x1``/``y1`` exclusive).
        scales: ``[P]`` float64, crop side / image side.
        image_size: side of the (square) preprocessed images and of the resized patches.
    """

    image_index: np.ndarray
    boxes: np.ndarray
    scales: np.ndarray
    image_size: int

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatchGrid):
            return NotImplemented
        return (
            self.image_size == other.image_size
            and np.array_equal(self.image_index, other.image_index)
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.scales, other.scales)
        )

    __hash__ = None  # type: ignore[assignment]

    def subset(self, ids: np.ndarray | Sequence[int]) -> PatchGrid:
        ids = np.asarray(ids, dtype=np.int64)
        return PatchGrid(self.image_index[ids], self.boxes[ids], self.scales[ids], self.image_size)


def patch_boxes(image_size: int, scales: Sequence[float] = (1.0, 0.5, 0.25), stride_ratio: float = 0.5) -> list[tuple[tuple[int, int, int, int], float]]:
    """Crop boxes of one square image: a sliding window per scale.

    A crop of side ``int(scale * image_size)`` slides with stride
    ``max(int(side * stride_ratio), 1)``, as in the authors' release (``unfold`` over the
    image), so scale 1 gives the whole image, 0.5 a 3x3 grid, 0.25 a 7x7 grid.

    Returns:
        ``[((x0, y0, x1, y1), scale), ...]`` in scale order, row-major within a scale.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not 0 < stride_ratio <= 1:
        raise ValueError(f"stride_ratio must be in (0, 1], got {stride_ratio}")
    out = []
    for scale in scales:
        if not 0 < scale <= 1:
            raise ValueError(f"patch scales must be in (0, 1], got {scale}")
        side = max(int(scale * image_size), 1)
        stride = max(int(side * stride_ratio), 1)
        starts = range(0, image_size - side + 1, stride)
        for y0 in starts:
            for x0 in starts:
                out.append(((x0, y0, x0 + side, y0 + side), float(scale)))
    return out


def make_patch_grid(num_images: int, image_size: int, scales: Sequence[float] = (1.0, 0.5, 0.25), stride_ratio: float = 0.5) -> PatchGrid:
    """The grid of D for ``num_images`` images: every box of :func:`patch_boxes` per image."""
    if num_images < 1:
        raise ValueError("the image set is empty: the patch dataset needs at least one image of the class")
    per_image = patch_boxes(image_size, scales, stride_ratio)
    boxes = np.array([b for b, _ in per_image], dtype=np.int64)
    sc = np.array([s for _, s in per_image], dtype=np.float64)
    n = len(per_image)
    return PatchGrid(
        image_index=np.repeat(np.arange(num_images, dtype=np.int64), n),
        boxes=np.tile(boxes, (num_images, 1)),
        scales=np.tile(sc, num_images),
        image_size=image_size,
    )


def crop_patches(images: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Cut and resize the patches of ``grid`` from ``images``.

    Crops are resized to the input size with bilinear interpolation (no antialiasing, as
    the authors' release). Cropping and resizing commute with per-channel normalisation,
    so ``images`` may be already normalised.

    Args:
        images: ``[I, C, S, S]`` preprocessed images.
        grid: the patches to cut (indices into ``images``).

    Returns:
        ``[len(grid), C, S, S]`` on the device and in the memory format of ``images``.
    """
    size = grid.image_size
    if images.shape[-1] != size or images.shape[-2] != size:
        raise ValueError(f"images must be {size}x{size}, got {tuple(images.shape[-2:])}")
    out = torch.empty(len(grid), images.shape[1], size, size, dtype=images.dtype, device=images.device, memory_format=memory_format_of(images))
    # group by box so each distinct box is one batched crop + resize
    _, keys = np.unique(grid.boxes, axis=0, return_inverse=True)
    keys = keys.reshape(-1)
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        x0, y0, x1, y1 = (int(v) for v in grid.boxes[sel[0]])
        crops = images[torch.as_tensor(grid.image_index[sel], device=images.device), :, y0:y1, x0:x1]
        if x1 - x0 != size or y1 - y0 != size:
            crops = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False)
        out[torch.as_tensor(sel, device=images.device)] = crops
    return out


def iter_patch_batches(images: torch.Tensor, grid: PatchGrid, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(slice into the grid, [b, C, S, S] patches)`` batches in grid order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(grid), batch_size):
        sl = slice(start, min(start + batch_size, len(grid)))
        yield sl, crop_patches(images, grid.subset(np.arange(sl.start, sl.stop)))
