"""Fingerprints of model weights and data, and the software environment of a build.

A circuit is only meaningful for the exact weights and images it was computed from; the
fingerprints let the loader, the debugger and the evaluator refuse mismatched inputs.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["model_fingerprint", "data_fingerprint", "environment"]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu").contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else t.detach().float().cpu().numpy().tobytes()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict: names, dtypes, shapes and values, in key order."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            h.update(f"{value.dtype}{tuple(value.shape)}".encode())
            h.update(_tensor_bytes(value))
    return "sha256:" + h.hexdigest()


def data_fingerprint(images: torch.Tensor, image_ids: Sequence[str]) -> str:
    """sha256 of the preprocessed images (as float32) and their ids."""
    h = hashlib.sha256()
    for i in image_ids:
        h.update(i.encode() + b"\0")
    h.update(np.ascontiguousarray(images.detach().float().cpu().numpy()).tobytes())
    return "sha256:" + h.hexdigest()


def environment() -> dict[str, str]:
    """Versions that can change a circuit's numbers."""
    from importlib import metadata

    import sklearn

    try:
        own = metadata.version("neurflow")
    except metadata.PackageNotFoundError:  # running from a source tree
        own = "0+unknown"
    return {"neurflow": own, "torch": torch.__version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()}
