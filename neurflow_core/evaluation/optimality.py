"""Optimality of core concept neurons (Section 4, Figure 4).

For sampled target neurons ``a``, the loss ``L(S, a) = |V_a^{knock out S} ∩ V_a| / |V_a|``
(Definition 2) of the core set ``S_a`` (its top-``tau`` prefix) against ``R`` random sets of
the same size from the layer below. Reported per layer and ``tau``: the mean of
``L(random) - L(core)`` with a 99% t-interval, and the fraction of random sets with a smaller
loss than the core set.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit, CoreNeurons, NeuronRef
from ..intervention import eval_mode, layer_widths, to_model
from ..metrics import concept_overlap
from ..progress import ProgressFactory, stage
from ..segments import split_model
from .common import Engines, _capped_taus, _ci99, _engine, _rng, _sample_targets, _transitions
from .config import EvaluationConfig
from .results import OptimalityCase, OptimalityCell, OptimalityResult

__all__ = ["optimality"]


def optimality(
    model: nn.Module,
    circuit: Circuit,
    images: torch.Tensor,
    config: EvaluationConfig | None = None,
    *,
    progress: ProgressFactory | None = None,
    engines: Engines | None = None,
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
        engines: knock-out engines shared with other experiments of the same images, by
            upper layer (filled here); None for engines of this call only.

    Returns:
        The :class:`OptimalityResult`.
    """
    config = config or EvaluationConfig()
    images = to_model(model, images)
    taus = _capped_taus(config.taus, circuit.config.tau)
    cells: list[OptimalityCell] = []
    cases: list[OptimalityCase] = []
    agreement: dict[str, float] = {}
    all_diffs: list[np.ndarray] = []
    with eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = layer_widths(split, images)
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
            engine = _engine(engines, split, upper, images, circuit, config)
            with stage(progress, f"optimality {upper} -> {lower}", len(circuit.patches)) as bar:
                concepts = engine.concepts(sets, owners, circuit.config.k, bar=bar)  # [M, k]
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
