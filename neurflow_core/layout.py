"""Memory layout of convolution models during a circuit build (speed only).

oneDNN (CPU) and cuDNN run 2-D convolutions fastest on NHWC ("channels_last") tensors,
but only when both the weights *and* the inputs are channels_last (weights alone are
slower); the README's benchmark section has the measured gains. The numbers a build
produces differ only by floating-point summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["channels_last", "memory_format_of"]


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D NHWC tensor, else ``torch.contiguous_format``."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@contextlib.contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Hold the model's 4-D parameters and buffers in channels_last for the duration.

    Yields whether the layout was switched: only when ``enabled``, the model has 4-D
    parameters, and all of them are plain contiguous (a model already in another layout is
    left alone). The parameters are restored to contiguous afterwards, also after errors;
    their values never change.
    """
    four_d = [p for p in model.parameters() if p.dim() == 4]
    switch = enabled and bool(four_d) and all(p.is_contiguous() for p in four_d)
    if not switch:
        yield False
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield True
    finally:
        model.to(memory_format=torch.contiguous_format)
