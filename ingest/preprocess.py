"""How an image file becomes a model input: one recorded, explicit choice.

The geometry (:func:`fit`) is written once and used for model inputs (``images``), for the
pictures the explorer shows (``web.media``) and for per-pixel annotation maps
(``labelling.annotations``), so a patch box means the same pixels everywhere.

Resize policies (``--resize``):

* ``shorter:N``: resize the shorter side to N, then centre-crop the input size (torchvision's
  ``Resize(N) + CenterCrop(size)``; the default, with N = size / 0.875 or the weights' own);
* ``exact``: resize the whole image to size x size (aspect ratio not kept, nothing cropped);
* ``none``: no resizing, only the centre crop: for images already prepared at the input size
  (a smaller image is an error), so the model sees their pixels as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from neurflow.errors import InputError

__all__ = ["Preprocess", "POLICIES", "INTERPOLATIONS", "parse_resize", "fit"]

POLICIES = ("shorter", "exact", "none")
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a model input.

    Attributes:
        input_size: side of the square model input (and of every patch).
        resize: for policy ``shorter``, the shorter side is resized to this before the crop.
        mean: per-channel mean, or None for no normalisation.
        std: per-channel std, or None.
        policy: ``shorter``, ``exact`` or ``none`` (see the module docstring).
        interpolation: the resampling filter (the torchvision weights' own when they have one).
    """

    input_size: int
    resize: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    policy: str = "shorter"
    interpolation: str = "bilinear"

    def describe(self) -> dict[str, Any]:
        """The record in ``run.json`` (and the artifact's settings key). The default policy and
        filter are left out, so artifacts computed before they existed stay up to date."""
        doc: dict[str, Any] = {"input_size": self.input_size, "resize": self.resize, "mean": self.mean, "std": self.std}
        if self.policy != "shorter":
            doc["policy"] = self.policy
        if self.interpolation != "bilinear":
            doc["interpolation"] = self.interpolation
        return doc

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Preprocess:
        """The inverse of :meth:`describe`."""
        mean, std = doc.get("mean"), doc.get("std")
        return cls(
            int(doc["input_size"]),
            int(doc.get("resize") or doc["input_size"]),
            tuple(mean) if mean is not None else None,
            tuple(std) if std is not None else None,
            doc.get("policy", "shorter"),
            doc.get("interpolation", "bilinear"),
        )


def parse_resize(value: str | None) -> tuple[str, int | None] | None:
    """``shorter:256`` -> ("shorter", 256); ``shorter`` -> ("shorter", None); ``exact``,
    ``none``; None -> None (the model's default)."""
    if value is None:
        return None
    name, _, arg = value.partition(":")
    if name not in POLICIES:
        raise InputError(f"--resize must be shorter:N, exact or none, got '{value}'")
    if name != "shorter":
        if arg:
            raise InputError(f"--resize {name} takes no size, got '{value}'")
        return name, None
    if not arg:
        return name, None
    try:
        size = int(arg)
    except ValueError:
        raise InputError(f"--resize shorter:N needs an integer N, got '{value}'") from None
    if size < 1:
        raise InputError(f"--resize shorter:N needs N >= 1, got '{value}'")
    return name, size


def fit(im: Image.Image, pre: Preprocess, resample: Image.Resampling | None = None) -> Image.Image:
    """The model's view of ``im``: resized by ``pre.policy`` and centre-cropped to the input size.

    Args:
        resample: a PIL filter overriding ``pre.interpolation`` (``Image.NEAREST`` for label maps).
    """
    size = pre.input_size
    flt = INTERPOLATIONS[pre.interpolation] if resample is None else resample
    w, h = im.size
    if pre.policy == "exact":
        return im.resize((size, size), flt) if (w, h) != (size, size) else im
    if pre.policy == "shorter":
        scale = pre.resize / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), flt)
        w, h = im.size
    elif min(w, h) < size:
        raise ValueError(f"image is {w}x{h}, smaller than the input size {size} (--resize none does not enlarge)")
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))
