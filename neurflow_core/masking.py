"""Knocking neurons out: zero (or keep only) chosen channels of a layer's output.

Definition 2 removes a set S of neurons from the computational graph; for a neuron that is
a channel of a layer's output, removing it means its output is zero for every input.
Forward hooks do that on the original model (and on every fx segment built from it, which
calls the same module objects). Hooks exist only inside the context manager and are
removed in ``finally``, also when the body raises. The hooks multiply the mask into the
output with :func:`neurflow.intervention.apply_mask`, the same function the batched masked
forwards of the experiments and the debugger use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from .intervention import apply_mask, channel_mask

__all__ = ["knockout", "retain", "channel_mask"]


def _resolve(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        if name not in modules or not name:
            raise ValueError(f"unknown layer '{name}'")
        out[name] = modules[name]
    return out


@contextlib.contextmanager
def _masked(model: nn.Module, channels: Mapping[str, Iterable[int]], keep: bool) -> Iterator[None]:
    modules = _resolve(model, channels)
    chosen = {name: list(chs) for name, chs in channels.items()}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            mask = channel_mask(output.shape[1], chosen[name], keep=keep).unsqueeze(0)  # [1, C]
            return apply_mask(output, mask)

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield
    finally:
        for h in handles:
            h.remove()


def knockout(model: nn.Module, channels: Mapping[str, Iterable[int]]) -> contextlib.AbstractContextManager[None]:
    """Zero ``channels[layer]`` of each layer's output while the context is open.

    Example::

        with knockout(model, {"layer4.2": [3, 17]}):
            logits = model(x)
    """
    return _masked(model, channels, keep=False)


def retain(model: nn.Module, channels: Mapping[str, Iterable[int]]) -> contextlib.AbstractContextManager[None]:
    """Zero every channel *except* ``channels[layer]`` of each layer's output (the retaining
    variant of the fidelity experiment, Section 4)."""
    return _masked(model, channels, keep=True)
