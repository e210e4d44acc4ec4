"""Result types of the Section 4 experiments: plain frozen dataclasses, one per figure's unit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from ..circuit import NeuronRef
from .config import EvaluationConfig

__all__ = [
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
]


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
