"""The faithfulness experiments of Section 4: optimality, fidelity and correlation.

Three experiments test a built :class:`~neurflow.circuit.Circuit` against the model it was
built from:

* **Optimality of core concept neurons** (Figure 4): for sampled target neurons ``a``, the
  loss ``L(S, a) = |V_a^{knock out S} ∩ V_a| / |V_a|`` (Definition 2, Section 4) of the core
  set ``S_a`` (its top-``tau`` prefix) against ``R`` random sets of the same size from the
  layer below. Reported per layer and ``tau``: the mean of ``L(random) - L(core)`` with a
  99% t-interval, and the fraction of random sets with a smaller loss than the core set.
* **Fidelity of core concept neurons** (Figure 5): accuracy on the class's images when only
  the core neurons of a layer are masked, versus as many random neurons; and when only they
  are retained (every other channel zeroed), versus as many random ones; on one layer and
  on every layer from the classifier down to it; normalised so that 1 means unchanged.
* **Fidelity of the interaction weights** (Figure 6): for sampled targets, random
  combinations of 1..50 neurons of the layer below; Pearson and Spearman correlation, per
  cardinality, between the summed ``|T(a, s, V_a)|`` (Eq. 2) of a combination and the
  knock-out loss ``1 - L(S, a)`` it causes.

Knock-outs follow Definition 2: the channels of ``S`` are zeroed at the lower layer's output
and the target's top-k is recomputed over the whole patch dataset D. Because a segment
``phi^{l-1,l}`` reads nothing from before the cut (:func:`neurflow.segments.split_model`
refuses such cuts), zeroing channels of the lower layer's output and running the segment
gives exactly the activations :func:`neurflow.metrics.knockout_concepts` computes with
forward hooks on the whole model; the lower feature maps of a batch of patches are computed
once and reused for every knocked-out set, and many sets run as one batch (the tests check
both paths agree). Fidelity masks like :func:`neurflow.masking.knockout` and
:func:`neurflow.masking.retain` (zeroed channels of layer outputs), computing the network
below the lowest masked layer once for every mask and running the segments above it.

Everything is deterministic for a seed: every random draw comes from a generator seeded by
``(seed, experiment, layer, target, size)``, so results do not depend on the order in which
targets are visited or on which other experiments run.

Nothing here knows about files, databases or command lines; see ``neurflow evaluate``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .progress import Bar, ProgressFactory, stage
from .activations import top_k
from .circuit import Circuit, CoreNeurons, NeuronRef
from .fingerprint import data_fingerprint, model_fingerprint
from .masking import channel_mask
from .metrics import concept_overlap
from .patches import PatchGrid, iter_patch_batches
from .segments import ModelSplit, neuron_activations, split_model

__all__ = [
    "EXPERIMENTS",
    "EvaluationConfig",
    "EvaluationInputError",
    "OptimalityCase",
    "OptimalityCell",
    "OptimalityResult",
    "FidelityCell",
    "FidelityResult",
    "CorrelationTarget",
    "CorrelationCell",
    "CorrelationResult",
    "EvaluationSummary",
    "Evaluation",
    "verify_inputs",
    "circuit_neurons",
    "knocked_concepts",
    "optimality",
    "fidelity",
    "correlation",
    "summarize",
    "evaluate_circuit",
    "to_jsonable",
]

EXPERIMENTS: tuple[str, ...] = ("optimality", "fidelity", "correlation")




class EvaluationInputError(ValueError):
    """The model or the images are not the ones the circuit was built from."""


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of the three experiments (defaults: the paper's Section 4 sizes).

    Attributes:
        samples: target neurons sampled per layer transition (optimality and correlation;
            the paper uses 5 per class for optimality and 10 targets for correlation).
        random_sets: R, random neuron sets per target and tau in the optimality experiment
            (the paper: 100).
        taus: core-set sizes; values above the circuit's tau are capped to it, using the
            top-tau prefix of each ranked core list (the paper: 10/30/50 for optimality,
            4/8/16 for fidelity).
        fidelity_draws: random neuron sets per cell of the fidelity experiment.
        max_cardinality: largest combination size of the correlation experiment (the paper:
            50), capped at the layer width minus one (a combination of every neuron is a
            single combination and has no correlation).
        combinations: random combinations per cardinality and target (correlation).
        seed: the seed of every random draw.
        layers: evaluate only these layers (the lower layer of a transition: the layer of
            the core neurons, Figure 4-6's x-axis); None = every layer below the logit.
        batch_size: patches per prefix forward pass (bounds the feature-map memory).
        max_batch: inputs per segment call when many knocked-out sets run as one batch.
    """

    samples: int = 5
    random_sets: int = 100
    taus: tuple[int, ...] = (4, 8, 16)
    fidelity_draws: int = 10
    max_cardinality: int = 50
    combinations: int = 100
    seed: int = 0
    layers: tuple[str, ...] | None = None
    batch_size: int = 64
    max_batch: int = 512

    def __post_init__(self) -> None:
        for name in ("samples", "random_sets", "fidelity_draws", "max_cardinality", "combinations", "batch_size", "max_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        taus = tuple(int(t) for t in self.taus)
        if not taus or min(taus) < 1:
            raise ValueError(f"taus must be a non-empty list of positive integers, got {list(self.taus)}")
        object.__setattr__(self, "taus", taus)
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must name at least one layer (or be None for all)")
            object.__setattr__(self, "layers", tuple(str(x) for x in self.layers))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class OptimalityCase:
    """One target neuron at one tau (one group of bars' worth of samples of Figure 4).

    Attributes:
        target: the target neuron a.
        lower_layer: the layer of the core and random sets.
        tau: the size of the core set (top-tau prefix of the ranked core list).
        core: the core set ``S_a`` evaluated.
        core_loss: ``L(S_a, a)``.
        random_losses: ``L(S, a)`` of each of the R random sets.
    """

    target: NeuronRef
    lower_layer: str
    tau: int
    core: tuple[int, ...]
    core_loss: float
    random_losses: tuple[float, ...]


@dataclass(frozen=True)
class OptimalityCell:
    """Figure 4's bars for one layer and one tau, pooled over the sampled targets.

    Attributes:
        upper_layer: the layer of the target neurons.
        layer: the layer of the core neurons (the x-axis of Figure 4).
        tau: the core-set size.
        n_targets: sampled target neurons.
        n: (target, random set) pairs, ``n_targets * R``.
        mean_diff: mean of ``L(random) - L(core)``; positive means the core set changes the
            concept more than random sets do.
        ci_low, ci_high: the 99% confidence interval of ``mean_diff`` (Student t, n - 1
            degrees of freedom; NaN when n < 2).
        frac_random_better: fraction of random sets with a smaller loss than the core set
            (Figure 4's pink bars).
        mean_gap_random_better: mean of ``L(core) - L(random)`` over those sets (NaN when
            there are none); the paper reports this gap as negligible.
        mean_core_loss, mean_random_loss: the two means that ``mean_diff`` subtracts.
    """

    upper_layer: str
    layer: str
    tau: int
    n_targets: int
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    frac_random_better: float
    mean_gap_random_better: float
    mean_core_loss: float
    mean_random_loss: float


@dataclass(frozen=True)
class OptimalityResult:
    """The optimality experiment (Figure 4).

    Attributes:
        cells: one per (layer transition, tau), top layer first.
        cases: the per-target samples behind the cells.
        pooled_mean_diff, pooled_ci_low, pooled_ci_high: ``L(random) - L(core)`` over every
            sample of every cell, with its 99% t-interval.
        pooled_frac_random_better: the fraction of random sets beating the core, over all.
        concept_agreement: per sampled target, the overlap between V_a recomputed here
            (nothing knocked out) and the V_a stored in the artifact; 1.0 when the
            recomputation reproduces the build.
        random_sets: R.
        seed: the seed.
    """

    cells: tuple[OptimalityCell, ...]
    cases: tuple[OptimalityCase, ...]
    pooled_mean_diff: float
    pooled_ci_low: float
    pooled_ci_high: float
    pooled_frac_random_better: float
    concept_agreement: dict[str, float]
    random_sets: int
    seed: int


@dataclass(frozen=True)
class FidelityCell:
    """Figure 5 for one tau, one layer and one scope.

    Accuracies are normalised by the unmasked model's accuracy on the same images (1 =
    unchanged). "Core neurons of a layer" are the neurons of the circuit truncated to
    ``tau`` (see :func:`circuit_neurons`).

    Attributes:
        tau: the core-set size per target.
        layer: the layer the cell is about (the x-axis of Figure 5).
        scope: ``single`` (only ``layer``) or ``multi`` (every circuit layer from the one
            below the logit layer down to ``layer``; for that first layer both scopes are
            the same experiment and carry the same numbers).
        layers: the layers masked or retained.
        n_neurons: the core neurons per masked layer (the random sets have the same sizes).
        mask_core, mask_random: normalised class accuracy with the core neurons (or as
            many random ones, mean over the draws) zeroed.
        mask_random_std: the standard deviation of ``mask_random`` over the draws.
        retain_core, retain_random, retain_random_std: the same with every channel *but*
            the core (or random) neurons zeroed.
        other_mask_core, other_mask_random, other_retain_core, other_retain_random: the
            same four on other classes' images (normalised by their own unmasked accuracy;
            NaN when none were given).
    """

    tau: int
    layer: str
    scope: str
    layers: tuple[str, ...]
    n_neurons: tuple[int, ...]
    mask_core: float
    mask_random: float
    mask_random_std: float
    retain_core: float
    retain_random: float
    retain_random_std: float
    other_mask_core: float
    other_mask_random: float
    other_retain_core: float
    other_retain_random: float


@dataclass(frozen=True)
class FidelityResult:
    """The fidelity experiment (Figure 5).

    Attributes:
        cells: one per (tau, layer, scope).
        base_accuracy: the unmasked model's accuracy on the class's images.
        base_other_accuracy: its accuracy on the other classes' images (NaN when none).
        n_images: class images evaluated.
        n_other: other-class images evaluated.
        draws: random sets per cell.
        seed: the seed.
    """

    cells: tuple[FidelityCell, ...]
    base_accuracy: float
    base_other_accuracy: float
    n_images: int
    n_other: int
    draws: int
    seed: int


@dataclass(frozen=True)
class CorrelationTarget:
    """One target neuron's correlations, one entry per cardinality.

    Attributes:
        target: the target neuron a.
        lower_layer: the layer the combinations are drawn from.
        cardinalities: the combination sizes.
        pearson, spearman: the correlation at each size (NaN when either side is constant).
        importance: ``[n_card, n_comb]`` summed ``|T(a, s, V_a)|`` of each combination.
        loss: ``[n_card, n_comb]`` ``1 - L(S, a)`` of each combination.
    """

    target: NeuronRef
    lower_layer: str
    cardinalities: tuple[int, ...]
    pearson: tuple[float, ...]
    spearman: tuple[float, ...]
    importance: np.ndarray = field(compare=False, repr=False)
    loss: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class CorrelationCell:
    """Figure 6 for one layer and one cardinality: correlations averaged over targets.

    Attributes:
        n_targets: targets with a defined correlation at this cardinality.
    """

    upper_layer: str
    layer: str
    cardinality: int
    pearson: float
    spearman: float
    n_targets: int


@dataclass(frozen=True)
class CorrelationResult:
    """The interaction-weight fidelity experiment (Figure 6).

    Attributes:
        cells: one per (layer transition, cardinality).
        targets: the per-target data behind the cells.
        mean_pearson, mean_spearman: over every defined (target, cardinality) correlation.
        combinations: combinations per cardinality and target.
        seed: the seed.
    """

    cells: tuple[CorrelationCell, ...]
    targets: tuple[CorrelationTarget, ...]
    mean_pearson: float
    mean_spearman: float
    combinations: int
    seed: int

    def small_cardinality_spearman(self, up_to: int = 5) -> float:
        """Mean Spearman correlation over cardinalities ``<= up_to`` (NaN when undefined)."""
        vals = [s for t in self.targets for m, s in zip(t.cardinalities, t.spearman) if m <= up_to and np.isfinite(s)]
        return float(np.mean(vals)) if vals else float("nan")


@dataclass(frozen=True)
class EvaluationSummary:
    """The per-class summary written to the graph.

    Attributes:
        faithful: the rule of :func:`summarize`; None when optimality or fidelity did not run.
        optimality_diff: pooled mean ``L(random) - L(core)``.
        optimality_ci_low: the lower end of its 99% interval.
        fidelity_mask_core, fidelity_mask_random: mean normalised class accuracy over every
            fidelity cell, masking core / random neurons.
        fidelity_retain_core, fidelity_retain_random: the same, retaining.
        correlation_spearman: mean Spearman correlation over every target and cardinality.
        correlation_pearson: the same for Pearson.
    """

    faithful: bool | None = None
    optimality_diff: float | None = None
    optimality_ci_low: float | None = None
    fidelity_mask_core: float | None = None
    fidelity_mask_random: float | None = None
    fidelity_retain_core: float | None = None
    fidelity_retain_random: float | None = None
    correlation_spearman: float | None = None
    correlation_pearson: float | None = None

    def properties(self) -> dict[str, bool | float]:
        """``eval_*`` graph properties of what was computed (None and NaN left out)."""
        out: dict[str, bool | float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            out[f"eval_{f.name}"] = value
        return out


@dataclass(frozen=True)
class Evaluation:
    """All experiments run on one circuit.

    Attributes:
        class_index, class_name, model_name, model_fingerprint: from the circuit.
        config: the settings.
        optimality, fidelity, correlation: the results of the experiments that ran.
        summary: see :func:`summarize`.
        seconds: wall time per experiment.
    """

    class_index: int
    class_name: str
    model_name: str
    model_fingerprint: str
    config: EvaluationConfig
    optimality: OptimalityResult | None
    fidelity: FidelityResult | None
    correlation: CorrelationResult | None
    summary: EvaluationSummary
    seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def verify_inputs(circuit: Circuit, model: nn.Module, images: torch.Tensor | None = None) -> None:
    """Refuse a model or images other than those the circuit was built from.

    Args:
        circuit: the circuit (from an artifact).
        model: the classifier.
        images: ``[I, C, S, S]`` the class images D_c in the artifact's image order, or
            None to check only the model.

    Raises:
        EvaluationInputError: the weights' or the images' fingerprint differs, or the images
            do not fit the patch grid.
    """
    fp = model_fingerprint(model)
    if fp != circuit.model_fingerprint:
        raise EvaluationInputError(
            f"the model's weights (fingerprint {fp[:19]}...) are not the weights the circuit of class "
            f"'{circuit.class_name}' was built with ({circuit.model_fingerprint[:19]}...); pass the same --model and --weights as for 'neurflow compute'"
        )
    if images is None:
        return
    if images.dim() != 4 or images.shape[0] != len(circuit.image_ids):
        raise EvaluationInputError(f"expected {len(circuit.image_ids)} images of the class, got a tensor of shape {tuple(images.shape)}")
    if images.shape[-1] != circuit.patches.image_size or images.shape[-2] != circuit.patches.image_size:
        raise EvaluationInputError(
            f"the images are {images.shape[-2]}x{images.shape[-1]} but the circuit's patch grid is for "
            f"{circuit.patches.image_size}x{circuit.patches.image_size}; use the same --input-size as for 'neurflow compute'"
        )
    dfp = data_fingerprint(images, circuit.image_ids)
    if dfp != circuit.data_fingerprint:
        raise EvaluationInputError(
            f"the images of class '{circuit.class_name}' do not match the artifact (data fingerprint {dfp[:19]}... "
            f"!= {circuit.data_fingerprint[:19]}...): the files changed, or the data root or the preprocessing "
            "(--input-size/--mean/--std/--no-normalize) differ from 'neurflow compute'"
        )


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator seeded by ``seed`` and a key, independent of the order of calls."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


def _ci99(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and the 99% Student-t confidence interval of the mean."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    sem = float(v.std(ddof=1) / math.sqrt(v.size))
    half = float(stats.t.ppf(0.995, v.size - 1)) * sem
    return mean, mean - half, mean + half


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _capped_taus(taus: Sequence[int], circuit_tau: int) -> tuple[int, ...]:
    return tuple(sorted({min(int(t), int(circuit_tau)) for t in taus}))


def _layer_widths(split: ModelSplit, images: torch.Tensor) -> dict[str, int]:
    with torch.no_grad():
        feats = split.extractor()(images[:1])
    return {name: int(out.shape[1]) for name, out in feats.items()}


def _sample_targets(circuit: Circuit, upper: str, samples: int, seed: int, experiment: str) -> list[CoreNeurons]:
    pool = [t for t in circuit.targets if t.target.layer == upper]
    if len(pool) <= samples:
        return pool
    idx = np.sort(_rng(seed, experiment, "targets", upper).choice(len(pool), size=samples, replace=False))
    return [pool[int(i)] for i in idx]


def _transitions(circuit: Circuit, config: EvaluationConfig | None = None) -> list[tuple[str, str]]:
    """``(upper, lower)`` layer pairs, top first; only those whose lower layer is selected."""
    pairs = list(zip(circuit.layers[:-1], circuit.layers[1:]))
    if config is None or config.layers is None:
        return pairs
    valid = [lower for _, lower in pairs]
    unknown = [x for x in config.layers if x not in valid]
    if unknown:
        raise ValueError(f"layers {unknown} are not evaluable layers of this circuit; choose from {valid} (the logit layer has no core neurons)")
    return [(u, lo) for u, lo in pairs if lo in config.layers]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _to_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    param = next(model.parameters(), None)
    return x if param is None else x.to(device=param.device, dtype=param.dtype)


# --------------------------------------------------------------------------- knock-outs


@torch.no_grad()
def _knocked_activations(
    split: ModelSplit,
    upper: str,
    images: torch.Tensor,
    grid: PatchGrid,
    masks: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int,
    max_batch: int,
    bar: Bar | None = None,
) -> torch.Tensor:
    """``phi_{target_m}`` over D with the lower layer's output multiplied by ``masks[m]``.

    The lower layer's feature maps of each batch of patches are computed once (the prefix)
    and every mask runs through the segment ``phi^{l-1,l}`` on them, many masks per call.

    Args:
        masks: ``[M, C_lower]`` 0/1 channel masks (0 = knocked out).
        targets: ``[M]`` the upper-layer channel whose activation each mask is read on.

    Returns:
        ``[M, P]`` float32 on the CPU.
    """
    lower = split.lower_of(upper)
    prefix = split.extractor([lower])
    segment = split.segment(upper)
    n_masks = masks.shape[0]
    out = torch.empty(n_masks, len(grid), dtype=torch.float32)
    for sl, batch in iter_patch_batches(images, grid, batch_size):
        feats = prefix(batch)[lower]  # [b, C, *spatial]
        b, c = feats.shape[0], feats.shape[1]
        shape = (1, c) + (1,) * (feats.dim() - 2)
        per = max(1, max_batch // b)
        for m0 in range(0, n_masks, per):
            mk = masks[m0 : m0 + per].to(device=feats.device, dtype=feats.dtype)  # [m, C]
            m = mk.shape[0]
            x = (feats.unsqueeze(0) * mk.view(m, *shape)).flatten(0, 1)  # [m * b, C, *spatial]
            y = neuron_activations(segment(x)).view(m, b, -1)  # [m, b, C_upper]
            idx = targets[m0 : m0 + m].to(y.device).view(m, 1, 1).expand(m, b, 1)  # [m, b, 1]
            out[m0 : m0 + m, sl] = y.gather(2, idx).squeeze(2).float().cpu()  # [m, b]
        if bar is not None:
            bar.update(sl.stop - sl.start)
    return out


def _masks_from_sets(sets: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    masks = torch.ones(len(sets), width)  # [M, C]
    for i, s in enumerate(sets):
        if len(s):
            masks[i, torch.as_tensor(list(s), dtype=torch.long)] = 0.0
    return masks


def knocked_concepts(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    jobs: Sequence[tuple[NeuronRef, Sequence[int]]],
    *,
    batch_size: int = 64,
    max_batch: int = 512,
    split: ModelSplit | None = None,
    progress: Bar | None = None,
) -> list[np.ndarray]:
    """``V_a^{knock out S}`` (Definition 2) for many (target, S) pairs of one layer transition.

    Equivalent to :func:`neurflow.metrics.knockout_concepts` (hooks that zero ``S`` at the
    lower layer, top-k of the target over all of D), but the lower feature maps of D are
    computed once for every pair.

    Args:
        model: the classifier the circuit was built from.
        circuit: supplies the patch grid D, the layers and k.
        images: ``[I, C, S, S]`` the class images D_c, on the model's device.
        jobs: ``(target, S)`` pairs; every target must be in the same layer, and ``S`` are
            channels of the layer below it (an empty ``S`` gives V_a itself).
        split: a split of ``model`` at ``circuit.layers`` (made here when None).
        progress: a bar updated with the number of patches done.

    Returns:
        One ``[k]`` array of patch ids per job, highest activation first.
    """
    if not jobs:
        return []
    upper = jobs[0][0].layer
    if any(t.layer != upper for t, _ in jobs):
        raise ValueError("knocked_concepts takes targets of one layer per call")
    images = _to_model(model, images)
    with _eval_mode(model):
        split = split or split_model(model, circuit.layers)
        lower = split.lower_of(upper)
        width = _layer_widths(split, images)[lower]
        masks = _masks_from_sets([s for _, s in jobs], width)
        targets = torch.as_tensor([t.channel for t, _ in jobs], dtype=torch.long)
        acts = _knocked_activations(split, upper, images, circuit.patches, masks, targets, batch_size=batch_size, max_batch=max_batch, bar=progress)
    return [top_k(acts[i], circuit.config.k) for i in range(len(jobs))]


# --------------------------------------------------------------------------- optimality


def optimality(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    config: EvaluationConfig | None = None,
    *,
    progress: ProgressFactory | None = None,
) -> OptimalityResult:
    """The optimality of core concept neurons (Section 4, Figure 4).

    For every layer transition, ``config.samples`` target neurons of the upper layer are
    drawn from the circuit's targets. For each target ``a`` and each ``tau`` (capped at the
    circuit's tau), the loss ``L(S, a) = |V_a^{knock out S} ∩ V_a| / |V_a|`` of the top-tau
    core set is compared with that of ``config.random_sets`` uniformly random sets of
    ``tau`` channels of the layer below. ``V_a`` is recomputed with nothing knocked out, in
    the same numerical path as the knock-outs (its agreement with the stored concept is
    reported).

    Args:
        model: the classifier the circuit was built from.
        circuit: the circuit.
        images: ``[I, C, S, S]`` the class images D_c, in the artifact's order.
        config: the settings.
        progress: an optional progress-bar factory.

    Returns:
        The :class:`OptimalityResult`.
    """
    config = config or EvaluationConfig()
    images = _to_model(model, images)
    taus = _capped_taus(config.taus, circuit.config.tau)
    cells: list[OptimalityCell] = []
    cases: list[OptimalityCase] = []
    agreement: dict[str, float] = {}
    all_diffs: list[np.ndarray] = []
    with _eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = _layer_widths(split, images)
        for upper, lower in _transitions(circuit, config):
            chosen = _sample_targets(circuit, upper, config.samples, config.seed, "optimality")
            if not chosen:
                continue
            width = widths[lower]
            # jobs: per target, V_a itself, then per tau the core set and R random sets
            sets: list[tuple[int, ...]] = []
            owners: list[int] = []
            layout: list[tuple[CoreNeurons, int, int, int, tuple[int, ...]]] = []  # (target, tau, first row, base row, core)
            base_rows: dict[NeuronRef, int] = {}
            for t in chosen:
                base_row = base_rows[t.target] = len(sets)
                sets.append(())
                owners.append(t.target.channel)
                for tau in taus:
                    size = min(tau, len(t.core), width)
                    core = tuple(t.core[:size])
                    rng = _rng(config.seed, "optimality", t.target.key, size)
                    first = len(sets)
                    sets.append(core)
                    sets.extend(tuple(int(c) for c in rng.choice(width, size=size, replace=False)) for _ in range(config.random_sets))
                    owners.extend([t.target.channel] * (1 + config.random_sets))
                    layout.append((t, size, first, base_row, core))
            masks = _masks_from_sets(sets, width)
            with stage(progress, f"optimality {upper} -> {lower}", len(circuit.patches)) as bar:
                acts = _knocked_activations(
                    split, upper, images, circuit.patches, masks, torch.as_tensor(owners), batch_size=config.batch_size, max_batch=config.max_batch, bar=bar
                )
            concepts = [top_k(acts[i], circuit.config.k) for i in range(len(sets))]
            for t in chosen:
                agreement[t.target.key] = concept_overlap(t.concept, concepts[base_rows[t.target]])
            by_tau: dict[int, list[np.ndarray]] = {}
            core_losses: dict[int, list[float]] = {}
            rand_losses: dict[int, list[float]] = {}
            for t, size, first, base_row, core in layout:
                base = concepts[base_row]
                core_loss = concept_overlap(base, concepts[first])
                rand = tuple(concept_overlap(base, concepts[first + 1 + r]) for r in range(config.random_sets))
                cases.append(OptimalityCase(t.target, lower, size, core, core_loss, rand))
                by_tau.setdefault(size, []).append(np.asarray(rand) - core_loss)
                core_losses.setdefault(size, []).append(core_loss)
                rand_losses.setdefault(size, []).extend(rand)
            for size in sorted(by_tau):
                diffs = np.concatenate(by_tau[size])
                all_diffs.append(diffs)
                mean, lo, hi = _ci99(diffs)
                better = diffs < 0
                cells.append(
                    OptimalityCell(
                        upper_layer=upper,
                        layer=lower,
                        tau=size,
                        n_targets=len(by_tau[size]),
                        n=int(diffs.size),
                        mean_diff=mean,
                        ci_low=lo,
                        ci_high=hi,
                        frac_random_better=float(better.mean()),
                        mean_gap_random_better=float(-diffs[better].mean()) if better.any() else float("nan"),
                        mean_core_loss=float(np.mean(core_losses[size])),
                        mean_random_loss=float(np.mean(rand_losses[size])),
                    )
                )
    pooled = np.concatenate(all_diffs) if all_diffs else np.zeros(0)
    mean, lo, hi = _ci99(pooled)
    return OptimalityResult(
        cells=tuple(cells),
        cases=tuple(cases),
        pooled_mean_diff=mean,
        pooled_ci_low=lo,
        pooled_ci_high=hi,
        pooled_frac_random_better=float((pooled < 0).mean()) if pooled.size else float("nan"),
        concept_agreement=agreement,
        random_sets=config.random_sets,
        seed=config.seed,
    )


# --------------------------------------------------------------------------- fidelity


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
    out = {circuit.layers[0]: (circuit.class_index,)}
    for upper, lower in _transitions(circuit):
        below: set[int] = set()
        for ch in current:
            t = cores.get(NeuronRef(upper, ch))
            if t is not None:
                below.update(t.core[:tau])
        out[lower] = tuple(sorted(below))
        current = below
    return out


@torch.no_grad()
def _chain_predictions(
    split: ModelSplit,
    start: str,
    images: torch.Tensor,
    masks: dict[str, torch.Tensor],
    *,
    batch_size: int,
    max_batch: int,
    bar: Bar | None = None,
) -> torch.Tensor:
    """Predicted classes with channel masks multiplied into layer outputs, for many mask sets.

    The output of ``start`` is computed once per batch of images (the prefix), then the
    segments run upward to the logit layer, each layer's output multiplied by its mask:
    the same as forward hooks on the whole model (:func:`neurflow.masking.knockout` /
    :func:`~neurflow.masking.retain`), since no segment reads anything from before its cut.

    Args:
        start: the lowest layer that carries a mask.
        masks: ``{layer: [J, C_layer]}`` 0/1 masks of every job, for ``start`` and any
            layers above it (a layer missing from the dict is not masked).

    Returns:
        ``[J, N]`` predicted class indices (argmax of the logit layer), on the CPU.
    """
    layers = split.layers
    i = layers.index(start)
    n_jobs = next(iter(masks.values())).shape[0]
    extractor = split.extractor([start])
    preds = torch.empty(n_jobs, images.shape[0], dtype=torch.long)

    def masked(x: torch.Tensor, name: str, j0: int, m: int) -> torch.Tensor:  # x: [m, b, C, *spatial]
        if name not in masks:
            return x
        mk = masks[name][j0 : j0 + m].to(device=x.device, dtype=x.dtype)  # [m, C]
        return x * mk.view(m, 1, mk.shape[1], *([1] * (x.dim() - 3)))

    for b0 in range(0, images.shape[0], batch_size):
        feats = extractor(images[b0 : b0 + batch_size])[start]  # [b, C, *spatial]
        b = feats.shape[0]
        per = max(1, max_batch // b)
        for j0 in range(0, n_jobs, per):
            m = min(per, n_jobs - j0)
            x = masked(feats.unsqueeze(0).expand(m, *feats.shape), start, j0, m)  # [m, b, C, *spatial]
            for k in range(i, 0, -1):
                upper = layers[k - 1]
                y = split.segment(upper)(x.reshape(m * b, *x.shape[2:]))  # [m * b, C_upper, *spatial]
                x = masked(y.view(m, b, *y.shape[1:]), upper, j0, m)  # [m, b, C_upper, *spatial]
            preds[j0 : j0 + m, b0 : b0 + b] = x.reshape(m, b, -1).argmax(-1).cpu()  # [m, b]
        if bar is not None:
            bar.update(b)
    return preds


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
    images = _to_model(model, images)
    labels = labels.cpu().long()
    own = labels == circuit.class_index
    taus = _capped_taus(config.taus, circuit.config.tau)
    layers = circuit.layers[1:]
    selected = [lower for _, lower in _transitions(circuit, config)]
    cells: list[FidelityCell] = []
    base = base_other = float("nan")
    with _eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = _layer_widths(split, images)
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
                preds = _chain_predictions(split, layer, images, masks, batch_size=config.batch_size, max_batch=config.max_batch, bar=bar)  # [J, N]
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


# --------------------------------------------------------------------------- correlation


def _combinations(width: int, size: int, n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``n`` random ``size``-subsets of ``range(width)``; all of them when there are at most ``n``."""
    if math.comb(width, size) <= n:
        return [tuple(c) for c in itertools.combinations(range(width), size)]
    return [tuple(int(c) for c in rng.choice(width, size=size, replace=False)) for _ in range(n)]


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])


def correlation(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    config: EvaluationConfig | None = None,
    *,
    progress: ProgressFactory | None = None,
) -> CorrelationResult:
    """The fidelity of the IG interaction weights (Section 4, Figure 6).

    For ``config.samples`` target neurons per layer transition and every cardinality
    ``m = 1 .. min(config.max_cardinality, C_lower - 1)``, ``config.combinations`` random
    ``m``-subsets ``S`` of the layer below are knocked out (all subsets when there are
    fewer). Per (target, m), the Pearson and Spearman correlations are taken between
    ``sum_{s in S} |T(a, s, V_a)|`` (the target's stored importance of every channel,
    ``CoreNeurons.all_scores``) and the loss ``1 - L(S, a)``; Figure 6 averages them over
    the targets. A correlation is NaN (and left out of the averages) when either side is
    constant, e.g. when no singleton changes the concept.

    Args:
        model: the classifier the circuit was built from.
        circuit: the circuit.
        images: ``[I, C, S, S]`` the class images D_c, in the artifact's order.
        config: the settings.
        progress: an optional progress-bar factory.

    Returns:
        The :class:`CorrelationResult`.
    """
    config = config or EvaluationConfig()
    images = _to_model(model, images)
    per_target: list[CorrelationTarget] = []
    cells: list[CorrelationCell] = []
    with _eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = _layer_widths(split, images)
        for upper, lower in _transitions(circuit, config):
            chosen = _sample_targets(circuit, upper, config.samples, config.seed, "correlation")
            if not chosen:
                continue
            width = widths[lower]
            cards = tuple(range(1, max(1, min(config.max_cardinality, width - 1)) + 1))
            sets: list[tuple[int, ...]] = []
            owners: list[int] = []
            plan: list[tuple[CoreNeurons, int, list[tuple[int, int]]]] = []  # (target, base row, [(first, count)] per m)
            for t in chosen:
                base_row = len(sets)
                sets.append(())
                owners.append(t.target.channel)
                spans = []
                for m in cards:
                    combos = _combinations(width, m, config.combinations, _rng(config.seed, "correlation", t.target.key, m))
                    spans.append((len(sets), len(combos)))
                    sets.extend(combos)
                    owners.extend([t.target.channel] * len(combos))
                plan.append((t, base_row, spans))
            masks = _masks_from_sets(sets, width)
            with stage(progress, f"correlation {upper} -> {lower}", len(circuit.patches)) as bar:
                acts = _knocked_activations(
                    split, upper, images, circuit.patches, masks, torch.as_tensor(owners), batch_size=config.batch_size, max_batch=config.max_batch, bar=bar
                )
            k = circuit.config.k
            layer_targets = []
            for t, base_row, spans in plan:
                base = top_k(acts[base_row], k)
                score = np.abs(np.asarray(t.all_scores, dtype=np.float64))
                n_comb = max(count for _, count in spans)
                imp = np.full((len(cards), n_comb), np.nan)
                loss = np.full((len(cards), n_comb), np.nan)
                pear, spear = [], []
                for j, (first, count) in enumerate(spans):
                    rows = range(first, first + count)
                    imp[j, :count] = [score[list(sets[r])].sum() for r in rows]
                    loss[j, :count] = [1.0 - concept_overlap(base, top_k(acts[r], k)) for r in rows]
                    p, s = _correlations(imp[j, :count], loss[j, :count])
                    pear.append(p)
                    spear.append(s)
                ct = CorrelationTarget(t.target, lower, cards, tuple(pear), tuple(spear), imp, loss)
                per_target.append(ct)
                layer_targets.append(ct)
            for j, m in enumerate(cards):
                ps = [ct.pearson[j] for ct in layer_targets]
                ss = [ct.spearman[j] for ct in layer_targets]
                cells.append(CorrelationCell(upper, lower, m, _nanmean(ps), _nanmean(ss), int(np.isfinite(ss).sum())))
    return CorrelationResult(
        cells=tuple(cells),
        targets=tuple(per_target),
        mean_pearson=_nanmean([p for t in per_target for p in t.pearson]),
        mean_spearman=_nanmean([s for t in per_target for s in t.spearman]),
        combinations=config.combinations,
        seed=config.seed,
    )


# --------------------------------------------------------------------------- all together


def summarize(opt: OptimalityResult | None, fid: FidelityResult | None, cor: CorrelationResult | None) -> EvaluationSummary:
    """The per-class summary, with the faithfulness rule.

    A circuit is *faithful* when both claims of the paper about its core neurons hold:

    * optimality: random sets of the same size change the target concepts more than the
      core sets do, significantly -- the pooled mean ``L(random) - L(core)`` is positive and
      the lower end of its 99% t-interval is above zero; and
    * fidelity: masking the core neurons lowers the class accuracy more than masking as many
      random neurons, averaged over every (tau, layer, scope) cell.

    Returns:
        The summary; ``faithful`` is None unless both experiments ran.
    """
    kw: dict[str, Any] = {}
    if opt is not None:
        kw["optimality_diff"] = opt.pooled_mean_diff
        kw["optimality_ci_low"] = opt.pooled_ci_low
    if fid is not None:
        kw["fidelity_mask_core"] = _nanmean([c.mask_core for c in fid.cells])
        kw["fidelity_mask_random"] = _nanmean([c.mask_random for c in fid.cells])
        kw["fidelity_retain_core"] = _nanmean([c.retain_core for c in fid.cells])
        kw["fidelity_retain_random"] = _nanmean([c.retain_random for c in fid.cells])
    if cor is not None:
        kw["correlation_spearman"] = cor.mean_spearman
        kw["correlation_pearson"] = cor.mean_pearson
    if opt is not None and fid is not None:
        optimal = math.isfinite(opt.pooled_mean_diff) and opt.pooled_mean_diff > 0 and math.isfinite(opt.pooled_ci_low) and opt.pooled_ci_low > 0
        mc, mr = kw["fidelity_mask_core"], kw["fidelity_mask_random"]
        kw["faithful"] = bool(optimal and math.isfinite(mc) and math.isfinite(mr) and mc < mr)
    return EvaluationSummary(**kw)


def evaluate_circuit(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    *,
    experiments: Sequence[str] = EXPERIMENTS,
    eval_images: torch.Tensor | None = None,
    eval_labels: torch.Tensor | None = None,
    config: EvaluationConfig | None = None,
    progress: ProgressFactory | None = None,
    check: bool = True,
) -> Evaluation:
    """Run the chosen experiments of Section 4 on one circuit.

    Args:
        model: the classifier the circuit was built from.
        circuit: the circuit.
        images: ``[I, C, S, S]`` the class images D_c in the artifact's order (the patch
            dataset D is rebuilt from them and the artifact's patch grid).
        experiments: any of :data:`EXPERIMENTS`.
        eval_images, eval_labels: the fidelity experiment's images and true labels (default:
            ``images``, all labelled with the circuit's class).
        config: the settings.
        progress: an optional progress-bar factory.
        check: verify the model and data fingerprints first (:func:`verify_inputs`).

    Returns:
        The :class:`Evaluation`.

    Raises:
        EvaluationInputError: the model or the images are not the circuit's (with ``check``).
        ValueError: an unknown experiment name.
    """
    config = config or EvaluationConfig()
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}")
    if check:
        verify_inputs(circuit, model, images)
    if eval_images is None:
        eval_images = images
        eval_labels = torch.full((images.shape[0],), circuit.class_index, dtype=torch.long)
    elif eval_labels is None:
        raise ValueError("eval_labels must be given with eval_images")
    seconds: dict[str, float] = {}
    opt = fid = cor = None
    if "optimality" in experiments:
        t0 = time.perf_counter()
        opt = optimality(model, circuit, images, config, progress=progress)
        seconds["optimality"] = time.perf_counter() - t0
    if "fidelity" in experiments:
        t0 = time.perf_counter()
        fid = fidelity(model, circuit, eval_images, eval_labels, config, progress=progress)
        seconds["fidelity"] = time.perf_counter() - t0
    if "correlation" in experiments:
        t0 = time.perf_counter()
        cor = correlation(model, circuit, images, config, progress=progress)
        seconds["correlation"] = time.perf_counter() - t0
    return Evaluation(
        class_index=circuit.class_index,
        class_name=circuit.class_name,
        model_name=circuit.model_name,
        model_fingerprint=circuit.model_fingerprint,
        config=config,
        optimality=opt,
        fidelity=fid,
        correlation=cor,
        summary=summarize(opt, fid, cor),
        seconds=seconds,
    )


def to_jsonable(value: Any, *, arrays: bool = False) -> Any:
    """A JSON-ready copy of a result: dataclasses -> dicts, neurons -> ``"layer:channel"``,
    NaN/inf -> None. Numpy arrays (the raw correlation data) are dropped unless ``arrays``."""
    if isinstance(value, NeuronRef):
        return value.key
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in fields(value):
            v = getattr(value, f.name)
            if isinstance(v, np.ndarray) and not arrays:
                continue
            out[f.name] = to_jsonable(v, arrays=arrays)
        return out
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, arrays=arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, arrays=arrays) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), arrays=arrays)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
