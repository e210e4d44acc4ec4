"""Fidelity of core concept neurons (Section 4, Figure 5).

Accuracy on the class's images when only the core neurons of a layer are masked, versus as
many random neurons; and when only they are retained (every other channel zeroed), versus as
many random ones; on one layer and on every layer from the classifier down to it; normalised
so that 1 means unchanged. The masks are those of :func:`neurflow.masking.knockout` and
:func:`neurflow.masking.retain` (zeroed channels of layer outputs), run by
:func:`neurflow.intervention.masked_predictions`: the network below the lowest masked layer
runs once for every mask, the segments above it once per mask.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit, NeuronRef
from ..intervention import channel_mask, eval_mode, layer_widths, masked_predictions, to_model
from ..progress import ProgressFactory, stage
from ..segments import split_model
from .common import _capped_taus, _nanmean, _rng, _transitions
from .config import EvaluationConfig
from .results import FidelityCell, FidelityResult

__all__ = ["circuit_neurons", "fidelity"]


def circuit_neurons(circuit: Circuit, tau: int) -> dict[str, tuple[int, ...]]:
    """The neurons of each layer of the circuit truncated to ``tau`` core neurons per target.

    Starting from the class logit, each layer's neurons are the union of the top-``tau``
    prefixes of the ranked core lists of the neurons of the layer above. With the circuit's
    own tau this is every neuron of the hypertree (:meth:`Circuit.neurons`); with a smaller
    tau it is the circuit the build would have found with that tau (the ranking does not
    depend on tau). These are the "core concept neurons of a layer" of the fidelity
    experiment (Figure 5).

    Returns:
        ``{layer: sorted channels}`` for every layer, the logit layer included.
    """
    tau = min(int(tau), circuit.config.tau)
    cores = {t.target: t for t in circuit.targets}
    current = {circuit.class_index}
    out: dict[str, tuple[int, ...]] = {circuit.layers[0]: (circuit.class_index,)}
    for upper, lower in _transitions(circuit):
        below: set[int] = set()
        for ch in current:
            t = cores.get(NeuronRef(upper, ch))
            if t is not None:
                below.update(t.core[:tau])
        out[lower] = tuple(sorted(below))
        current = below
    return out


def _accuracy(preds: torch.Tensor, labels: torch.Tensor, own: torch.Tensor) -> tuple[float, float]:
    """(accuracy on the class's images, on the other images; NaN when there are none)."""
    hit = (preds == labels).double()
    acc = float(hit[own].mean()) if own.any() else float("nan")
    other = float(hit[~own].mean()) if (~own).any() else float("nan")
    return acc, other


def _ratio(value: float, base: float) -> float:
    return value / base if math.isfinite(value) and math.isfinite(base) and base > 0 else float("nan")


def fidelity(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: EvaluationConfig | None = None,
    *,
    progress: ProgressFactory | None = None,
) -> FidelityResult:
    """The fidelity of core concept neurons (Section 4, Figure 5).

    For each ``tau`` of ``config.taus`` (capped at the circuit's tau) and each circuit layer
    below the logit layer, the core neurons of that layer (:func:`circuit_neurons`) are

    * masked (zeroed) -- "masking version" -- or
    * retained (every *other* channel of the layer zeroed) -- "retaining version",

    and the model's accuracy is compared with the same operation on as many uniformly random
    channels of the layer (``config.fidelity_draws`` draws, averaged). ``single`` scope
    touches only that layer; ``multi`` scope touches every circuit layer from the one below
    the classifier down to it (random sets are drawn independently per layer). The logit
    layer itself is never masked: masking the class logit would trivially remove the class.
    Accuracies are divided by the unmasked model's accuracy on the same images.

    The masked forward passes are those of :func:`neurflow.masking.knockout` and
    :func:`neurflow.masking.retain` (zeroed channels of a layer's output), computed from
    the output of the lowest touched layer upward through the segments, so the unmasked
    part of the network below it runs once for all masks.

    Args:
        model: the classifier the circuit was built from.
        circuit: the circuit.
        images: ``[N, C, S, S]`` evaluation images: the class's images and optionally other
            classes' images.
        labels: ``[N]`` their true class indices.
        config: the settings.
        progress: an optional progress-bar factory.

    Returns:
        The :class:`FidelityResult`.
    """
    config = config or EvaluationConfig()
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    images = to_model(model, images)
    labels = labels.cpu().long()
    own = labels == circuit.class_index
    taus = _capped_taus(config.taus, circuit.config.tau)
    layers = circuit.layers[1:]
    selected = [lower for _, lower in _transitions(circuit, config)]
    cells: list[FidelityCell] = []
    base = base_other = float("nan")
    with eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = layer_widths(split, images)
        neurons = {tau: circuit_neurons(circuit, tau) for tau in taus}
        with stage(progress, "fidelity", len(selected) * images.shape[0]) as bar:
            for layer in selected:
                i = layers.index(layer)
                # jobs: [unmasked] + per (tau, scope, op): the core set, then the random draws
                specs: list[tuple[int, str, tuple[str, ...]]] = []
                for tau in taus:
                    for scope in ("single", "multi") if i > 0 else ("single",):
                        specs.append((tau, scope, (layer,) if scope == "single" else tuple(layers[: i + 1])))
                jobs: list[dict[str, tuple[list[int], bool]]] = [{}]
                for tau, scope, touched in specs:
                    for keep in (False, True):
                        jobs.append({name: (list(neurons[tau][name]), keep) for name in touched})
                        for d in range(config.fidelity_draws):
                            job = {}
                            for name in touched:
                                rng = _rng(config.seed, "fidelity", tau, scope, layer, name, d)
                                job[name] = ([int(c) for c in rng.choice(widths[name], size=len(neurons[tau][name]), replace=False)], keep)
                            jobs.append(job)
                masks = {}
                for name in layers[: i + 1]:
                    mk = torch.ones(len(jobs), widths[name])  # [J, C]
                    for j, job in enumerate(jobs):
                        if name in job:
                            channels, keep = job[name]
                            mk[j] = channel_mask(widths[name], channels, keep=keep)
                    masks[name] = mk
                preds = masked_predictions(split, layer, images, masks, batch_size=config.batch_size, max_batch=config.max_batch, bar=bar)  # [J, N]
                acc = [_accuracy(preds[j], labels, own) for j in range(len(jobs))]
                base, base_other = acc[0]
                row = 1
                per_op = 1 + config.fidelity_draws
                for tau, scope, touched in specs:
                    (mask_core, mask_rand), (keep_core, keep_rand) = ((acc[r], acc[r + 1 : r + per_op]) for r in (row, row + per_op))
                    row += 2 * per_op
                    r_mask = np.array([_ratio(a, base) for a, _ in mask_rand])
                    r_keep = np.array([_ratio(a, base) for a, _ in keep_rand])
                    cell = FidelityCell(
                        tau=tau,
                        layer=layer,
                        scope=scope,
                        layers=touched,
                        n_neurons=tuple(len(neurons[tau][name]) for name in touched),
                        mask_core=_ratio(mask_core[0], base),
                        mask_random=float(r_mask.mean()),
                        mask_random_std=float(r_mask.std()),
                        retain_core=_ratio(keep_core[0], base),
                        retain_random=float(r_keep.mean()),
                        retain_random_std=float(r_keep.std()),
                        other_mask_core=_ratio(mask_core[1], base_other),
                        other_mask_random=_nanmean([_ratio(o, base_other) for _, o in mask_rand]),
                        other_retain_core=_ratio(keep_core[1], base_other),
                        other_retain_random=_nanmean([_ratio(o, base_other) for _, o in keep_rand]),
                    )
                    cells.append(cell)
                    if i == 0:  # below the logit layer, single and multi touch the same one layer
                        cells.append(replace(cell, scope="multi"))
    cells.sort(key=lambda c: (c.tau, layers.index(c.layer), c.scope != "single"))
    return FidelityResult(
        cells=tuple(cells),
        base_accuracy=base,
        base_other_accuracy=base_other,
        n_images=int(own.sum()),
        n_other=int((~own).sum()),
        draws=config.fidelity_draws,
        seed=config.seed,
    )
