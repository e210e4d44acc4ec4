"""Metrics of Sections 4 and 5 (the knock-out loss L(S, a), the group-concept metric M) and
the agreement of two circuits' core neurons."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .activations import patch_activations, top_k
from .masking import knockout
from .patches import PatchGrid
from .segments import ModelSplit

if TYPE_CHECKING:
    from .circuit import Circuit

__all__ = ["concept_overlap", "core_jaccard", "group_concept_metric", "knockout_concepts"]


def core_jaccard(a: "Circuit", b: "Circuit", *, per_target: bool = False) -> float:
    """Pooled Jaccard agreement of two circuits' core neurons, over all layers.

    With ``per_target=False`` the elements are the core neurons of each layer (the union
    over that layer's targets, as ``(layer, channel)``), pooled over the layers: how far two
    builds of one class (another precision, device or quadrature) pick the same neurons.
    With ``per_target=True`` they are ``(target, core neuron)`` pairs, which also counts a
    neuron found for another target as a disagreement.

    Returns:
        ``|A ∩ B| / |A ∪ B|``; 1.0 when both circuits have no core neurons.
    """

    def elements(c: "Circuit") -> set[tuple]:
        if per_target:
            return {(t.target.layer, t.target.channel, t.lower_layer, int(s)) for t in c.targets for s in t.core}
        return {(t.lower_layer, int(s)) for t in c.targets for s in t.core}

    sa, sb = elements(a), elements(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def concept_overlap(concept: Sequence[int] | np.ndarray, knocked: Sequence[int] | np.ndarray) -> float:
    """``L(S, a) = |V_a^{knock out S} ∩ V_a| / |V_a|`` (Section 4): 1 = unchanged, 0 = all replaced."""
    base = set(int(v) for v in concept)
    if not base:
        raise ValueError("the concept V_a is empty")
    return len(base & set(int(v) for v in knocked)) / len(base)


def group_concept_metric(activations: np.ndarray | torch.Tensor, max_activations: np.ndarray | torch.Tensor, eps: float = 1e-6) -> np.ndarray:
    """The group-concept metric M(v, S_G, D) of Section 5, for many inputs at once.

    ``M = exp(mean_s log(phi_s(v) / max(phi_s, D)))``: the geometric mean of each group
    neuron's activation relative to its maximum over D. It is high only when every neuron of
    the group is active, and near zero when any of them is silent. Negative activations
    count as zero and ``eps`` keeps the logarithm finite (as the authors' release does).

    Args:
        activations: ``[n, |S_G|]`` spatial-mean activations of the group's neurons.
        max_activations: ``[|S_G|]`` their maxima over the patch dataset D.

    Returns:
        ``[n]`` scores in ``[0, ~1]`` (above 1 when an input exceeds the maximum over D).
    """
    a = np.asarray(activations, dtype=np.float64)
    m = np.abs(np.asarray(max_activations, dtype=np.float64))
    if a.ndim != 2 or a.shape[1] != m.shape[0]:
        raise ValueError(f"activations must be [n, {m.shape[0]}], got {a.shape}")
    if a.shape[1] == 0:
        raise ValueError("the group has no neurons")
    ratio = np.maximum(a, 0.0) / (m + eps)
    return np.exp(np.log(ratio + eps).mean(axis=1))


@torch.no_grad()
def knockout_concepts(
    model: nn.Module,
    split: ModelSplit,
    images: torch.Tensor,
    grid: PatchGrid,
    target_layer: str,
    targets: Sequence[int],
    knock: dict[str, Iterable[int]],
    k: int,
    *,
    batch_size: int = 64,
) -> list[np.ndarray]:
    """V_a^{knock out S} for several targets (Definition 2): top-k patches with S removed.

    Args:
        model: the model whose modules carry the hooks (the split was traced from it).
        knock: ``{layer: channels}`` to zero, e.g. ``{"layer4.1": core}``.

    Returns:
        One ``[k]`` array of patch ids per target.
    """
    called = {node.target for node in split.graph_module.graph.nodes if node.op == "call_module"}
    for name in knock:
        if name not in called:
            raise ValueError(
                f"cannot knock out layer '{name}': the traced split never calls it as one module "
                f"(torch.fx traced through it), so a hook on it would not run; add '{name}' to the "
                "split's layers"
            )
    with knockout(model, knock):
        acts = patch_activations(split, images, grid, [target_layer], batch_size=batch_size)[target_layer]
    return [top_k(acts[:, t], k) for t in targets]
