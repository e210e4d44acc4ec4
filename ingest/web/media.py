"""Images for the explorer and the report: only files the graph names, resized, cached.

A request names a node of the graph (a Patch or an Image uid), never a path. The file
is found with the ``media_files`` query: a patch's thumbnail PNG (written by
``neurflow compute``), a patch's source image (its image id, relative to one of the data
folders given with ``--data``) or an Image node's path (``neurflow debug``: relative to a
data folder, or absolute for ``--images``). A relative path that would leave its data
folder (``..``, symlinks) is refused, and so is anything that is not a readable image
(every answer is decoded and re-encoded by Pillow). Answers are PNG (or JPEG) bytes, cached
in a bounded in-memory LRU keyed by (uid, kind, size, format).
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = ["MediaStore", "Picture", "SIZES", "IMAGE_SUFFIXES"]

SIZES = (48, 64, 96, 128, 192, 320)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})

Runner = Callable[[str, dict], list]


@dataclass(frozen=True)
class Picture:
    """Encoded bytes and the geometry a page needs to draw a box on them."""


    data: bytes
    width: int
    height: int
    base: tuple[int, int]  # size of the picture before resizing (a patch box's pixel frame for 'source')


class MediaStore:
    """Resolve Patch/Image uids to files through the graph, and render them.

    Args:
        run: ``run(query_name, params) -> list of dict rows`` (the query library).
        data_roots: folders that image ids are relative to (``--data``), tried in order.
        cache_items: pictures kept in memory.
    """

    def __init__(self, run: Runner, data_roots: Sequence[Path] = (), cache_items: int = 2048) -> None:
        self._run = run
        self.data_roots = tuple(Path(r).resolve() for r in data_roots)
        self._cache: OrderedDict[tuple[str, str, int, str], Picture | None] = OrderedDict()
        self._limit = cache_items
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ lookups

    def rows(self, uids: Sequence[str]) -> dict[str, dict]:
        """``media_files`` rows by uid (unknown uids are absent)."""
        if not uids:
            return {}
        return {r["uid"]: r for r in self._run("media_files", {"uids": list(uids)})}

    def _source_path(self, image: str | None) -> Path | None:
        """A file under a data folder (or an absolute path the graph names), or None."""
        if not image:
            return None
        p = Path(image)
        candidates: list[Path] = []
        if p.is_absolute():
            candidates.append(p)
        else:
            for root in self.data_roots:
                c = (root / p).resolve()
                if c.is_relative_to(root):
                    candidates.append(c)
        for c in candidates:
            if c.suffix.lower() in IMAGE_SUFFIXES and c.is_file():
                return c
        return None

    # ------------------------------------------------------------------ pictures

    def picture(self, uid: str, kind: str, size: int, row: dict | None = None, fmt: str = "png") -> Picture | None:
        """The picture of a node, or None when the graph names no readable image for it.

        Args:
            uid: a Patch or Image uid.
            kind: ``thumb`` (a patch's exemplar crop, or an image), ``source`` (a
                patch's source image as the model saw it: resized and centre-cropped
                by its class's preprocessing, so the patch's box applies).
            size: the longest side in px (one of :data:`SIZES`).
            row: its ``media_files`` row, when the caller has it.
            fmt: ``png`` (lossless, the explorer) or ``jpeg`` (quality 85, a third of the
                bytes: the report, where every image is inlined).
        """
        if size not in SIZES or kind not in ("thumb", "source") or fmt not in ("png", "jpeg"):
            return None
        key = (uid, kind, size, fmt)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        self.misses += 1
        if row is None:
            row = self.rows([uid]).get(uid)
        pic = self._render(row, kind, size, fmt) if row is not None else None
        with self._lock:
            self._cache[key] = pic
            while len(self._cache) > self._limit:
                self._cache.popitem(last=False)
        return pic

    def _render(self, row: dict, kind: str, size: int, fmt: str) -> Picture | None:
        try:
            if row["kind"] == "patch" and kind == "thumb":
                thumb = row.get("thumbnail")
                path = Path(thumb) if thumb and Path(thumb).suffix.lower() in IMAGE_SUFFIXES and Path(thumb).is_file() else None
                if path is not None:
                    with Image.open(path) as im:
                        return _encode(im.convert("RGB"), size, fmt)
                # no thumbnail written: cut the box out of the source image
                src = self._model_view(row)
                if src is None:
                    return None
                x0, y0, x1, y1 = (int(v) for v in row["box"])
                return _encode(src.crop((x0, y0, x1, y1)), size, fmt)
            if row["kind"] == "patch":
                src = self._model_view(row)
                return _encode(src, size, fmt) if src is not None else None
            path = self._source_path(row.get("image"))
            if path is None:
                return None
            with Image.open(path) as im:
                return _encode(im.convert("RGB"), size, fmt)
        except (OSError, ValueError, TypeError, KeyError, Image.DecompressionBombError):
            return None

    def _model_view(self, row: dict) -> Image.Image | None:
        """The patch's source image as the model input (the box's coordinates)."""
        path = self._source_path(row.get("image"))
        if path is None:
            return None
        with Image.open(path) as src:
            im = src.convert("RGB")
            try:
                pre = json.loads(row.get("preprocess") or "null")
            except json.JSONDecodeError:
                pre = None
            if not pre or not pre.get("input_size"):
                return im.copy()
            from ..preprocess import Preprocess, fit

            return fit(im, Preprocess.from_record(pre))


def _encode(im: Image.Image, size: int, fmt: str) -> Picture:
    w, h = im.size
    scale = size / max(w, h)
    out = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt == "jpeg":
        out.save(buf, format="JPEG", quality=85, optimize=True)
    else:
        out.save(buf, format="PNG", optimize=True)
    return Picture(buf.getvalue(), out.size[0], out.size[1], (w, h))
