"""Image folders: scan an ImageFolder tree, resolve ``--classes``, load a class's images.

The data root holds one folder per class (torchvision's ImageFolder layout). A folder maps
to the model's class index by, in order of preference: the folder name equals one of the
model's category names (from torchvision weights); the folder name is an integer index;
otherwise the sorted folder order (ImageFolder's convention, which matches ImageNet's
``n0...`` folders and class indices).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError
from .preprocess import Preprocess, fit

__all__ = ["DataIndex", "ClassImages", "scan_data", "resolve_classes", "load_class_images", "default_loader_workers", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


@dataclass(frozen=True)
class DataIndex:
    """The class folders of a data root and how they map to model class indices.

    Attributes:
        root: the data root.
        folders: class folder names, sorted.
        files: folder -> image file paths relative to ``root``, sorted.
        index_of: folder -> model class index.
        names: class index -> human class name.
    """

    root: Path
    folders: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    index_of: dict[str, int]
    names: dict[int, str]

    def folder_of(self, class_index: int) -> str | None:
        for folder, idx in self.index_of.items():
            if idx == class_index:
                return folder
        return None


@dataclass(frozen=True)
class ClassImages:
    """The images of one class, preprocessed.

    Attributes:
        ids: image ids (paths relative to the data root).
        tensor: ``[N, 3, S, S]`` float32.
        skipped: ``(path, reason)`` of files that could not be read.
    """

    class_index: int
    class_name: str
    ids: tuple[str, ...]
    tensor: torch.Tensor
    skipped: tuple[tuple[str, str], ...] = field(default=())


def scan_data(root: str | Path, categories: tuple[str, ...] | None = None, num_classes: int | None = None) -> DataIndex:
    """Index an ImageFolder tree.

    Raises:
        InputError: the root is missing, not a directory, or has no class folder with images.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"data directory '{root}' does not exist")
    if not root.is_dir():
        raise InputError(f"data path '{root}' is not a directory")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"data directory '{root}' has no class folders (expected one folder per class, ImageFolder layout)")
    files = {
        f: tuple(sorted(str(p.relative_to(root)) for p in (root / f).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        for f in folders
    }
    if not any(files.values()):
        raise InputError(f"data directory '{root}' has class folders but no image files ({', '.join(IMAGE_EXTENSIONS)})")
    by_category = {_norm(c): i for i, c in enumerate(categories or ())}
    if categories and all(_norm(f) in by_category for f in folders):
        index_of = {f: by_category[_norm(f)] for f in folders}
    elif all(f.isdigit() for f in folders):
        index_of = {f: int(f) for f in folders}
    else:
        index_of = {f: i for i, f in enumerate(folders)}
    if num_classes is not None:
        bad = [f for f, i in index_of.items() if i >= num_classes]
        if bad:
            raise InputError(f"class folders {bad[:5]} map to indices beyond the model's {num_classes} classes")
    names = {i: (categories[i] if categories and i < len(categories) else f) for f, i in index_of.items()}
    return DataIndex(root, tuple(folders), files, index_of, names)


def resolve_classes(spec: str, data: DataIndex, categories: tuple[str, ...] | None = None) -> list[int]:
    """Turn ``--classes`` (``all``, or comma-separated indices and names) into class indices.

    Names match category names or folder names, case- and underscore-insensitively.

    Raises:
        InputError: an unknown name (with close matches) or an index without a data folder.
    """
    spec = spec.strip()
    if spec in ("all", "*"):
        return sorted(data.index_of.values())
    known: dict[str, int] = {}
    for i, c in enumerate(categories or ()):
        known.setdefault(_norm(c), i)
    for f, i in data.index_of.items():
        known.setdefault(_norm(f), i)
        known.setdefault(_norm(data.names[i]), i)
    out: list[int] = []
    for raw in (s.strip() for s in spec.split(",")):
        if not raw:
            continue
        if raw.isdigit():
            idx = int(raw)
        elif _norm(raw) in known:
            idx = known[_norm(raw)]
        else:
            close = difflib.get_close_matches(_norm(raw), list(known), n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise InputError(f"unknown class '{raw}'.{hint}")
        if data.folder_of(idx) is None:
            raise InputError(f"class {idx} ({data.names.get(idx, '?')}) has no image folder under '{data.root}'")
        if idx not in out:
            out.append(idx)
    if not out:
        raise InputError("no classes given; use --classes all, indices or names")
    return out


def _load_one(path: Path, pre: Preprocess) -> torch.Tensor:
    with Image.open(path) as src:
        arr = np.asarray(fit(src.convert("RGB"), pre), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    if pre.mean is not None and pre.std is not None:
        t = (t - torch.tensor(pre.mean).view(3, 1, 1)) / torch.tensor(pre.std).view(3, 1, 1)
    return t


class _Decoded(torch.utils.data.Dataset):
    """A class's image files as a dataset: ``(position, tensor or None, error name)``."""

    def __init__(self, root: Path, files: tuple[str, ...], pre: Preprocess) -> None:
        self.root, self.files, self.pre = root, files, pre

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, _load_one(self.root / self.files[i], self.pre), ""
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            return i, None, type(exc).__name__


def default_loader_workers(num_files: int) -> int:
    """Decoding processes for ``num_files`` images: 0 (decode in this process) for small
    folders or machines of 2 cores or fewer, else one per core but one, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 0 if num_files < 64 or cores <= 2 else min(8, cores - 1)


def load_class_images(data: DataIndex, class_index: int, pre: Preprocess, *, num_workers: int | None = None, pin_memory: bool = False) -> ClassImages:
    """Read and preprocess every image of one class; unreadable files are skipped and listed.

    Args:
        num_workers: processes decoding images in parallel (a torch ``DataLoader``); 0
            decodes in this process; None picks :func:`default_loader_workers`. The result
            does not depend on it (files are read in their sorted order).
        pin_memory: return the tensor in page-locked memory, so that its copy to a GPU
            can run asynchronously (``non_blocking=True``).

    Raises:
        InputError: the class has no folder, or none of its files could be read, or
            ``num_workers`` is negative.
    """
    folder = data.folder_of(class_index)
    if folder is None:
        raise InputError(f"class {class_index} has no image folder under '{data.root}'")
    files = data.files[folder]
    workers = default_loader_workers(len(files)) if num_workers is None else int(num_workers)
    if workers < 0:
        raise InputError(f"the number of image loader workers must be >= 0, got {workers}")
    dataset = _Decoded(data.root, files, pre)
    if workers == 0:
        decoded = (dataset[i] for i in range(len(dataset)))
    else:
        decoded = (item for batch in torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=workers, collate_fn=list) for item in batch)
    ids, tensors, skipped = [], [], []
    for i, tensor, error in decoded:  # in file order (DataLoader keeps the order)
        if tensor is None:
            skipped.append((files[i], error))
        else:
            tensors.append(tensor)
            ids.append(files[i])
    if not tensors:
        raise InputError(f"class '{data.names[class_index]}' ({folder}) has no readable images ({len(skipped)} files skipped)")
    stacked = torch.stack(tensors)
    if pin_memory and torch.cuda.is_available():
        stacked = stacked.pin_memory()
    return ClassImages(class_index, data.names[class_index], tuple(ids), stacked, tuple(skipped))
