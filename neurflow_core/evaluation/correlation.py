"""Fidelity of the interaction weights (Section 4, Figure 6).

For sampled targets, random combinations of 1..50 neurons of the layer below are knocked
out; per cardinality, the Pearson and Spearman correlations between the summed
``|T(a, s, V_a)|`` (Eq. 2) of a combination and the knock-out loss ``1 - L(S, a)`` it causes.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit, CoreNeurons
from ..intervention import eval_mode, layer_widths, to_model
from ..metrics import concept_overlap
from ..progress import ProgressFactory, stage
from ..segments import split_model
from .common import Engines, _engine, _nanmean, _rng, _sample_targets, _transitions
from .config import EvaluationConfig
from .results import CorrelationCell, CorrelationResult, CorrelationTarget

__all__ = ["correlation"]


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
    engines: Engines | None = None,
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
        engines: knock-out engines shared with other experiments of the same images, by
            upper layer (filled here); None for engines of this call only.

    Returns:
        The :class:`CorrelationResult`.
    """
    config = config or EvaluationConfig()
    images = to_model(model, images)
    per_target: list[CorrelationTarget] = []
    cells: list[CorrelationCell] = []
    with eval_mode(model):
        split = split_model(model, circuit.layers)
        widths = layer_widths(split, images)
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
            engine = _engine(engines, split, upper, images, circuit, config)
            with stage(progress, f"correlation {upper} -> {lower}", len(circuit.patches)) as bar:
                concepts = engine.concepts(sets, owners, circuit.config.k, bar=bar)  # [M, k]
            layer_targets = []
            for t, base_row, spans in plan:
                base = concepts[base_row]
                score = np.abs(np.asarray(t.all_scores, dtype=np.float64))
                n_comb = max(count for _, count in spans)
                imp = np.full((len(cards), n_comb), np.nan)
                loss = np.full((len(cards), n_comb), np.nan)
                pear, spear = [], []
                for j, (first, count) in enumerate(spans):
                    rows = range(first, first + count)
                    imp[j, :count] = [score[list(sets[r])].sum() for r in rows]
                    loss[j, :count] = [1.0 - concept_overlap(base, concepts[r]) for r in rows]
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
