"""All experiments together: the per-class summary with the faithfulness rule, the runner, and JSON."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit, NeuronRef
from ..progress import ProgressFactory
from .common import Engines, _nanmean, verify_inputs
from .config import EXPERIMENTS, EvaluationConfig
from .correlation import correlation
from .fidelity import fidelity
from .optimality import optimality
from .results import CorrelationResult, Evaluation, EvaluationSummary, FidelityResult, OptimalityResult

__all__ = ["summarize", "evaluate_circuit", "to_jsonable"]


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
    engines: Engines = {}  # optimality's lower maps of D serve correlation
    opt = fid = cor = None
    if "optimality" in experiments:
        t0 = time.perf_counter()
        opt = optimality(model, circuit, images, config, progress=progress, engines=engines)
        seconds["optimality"] = time.perf_counter() - t0
    if "fidelity" in experiments:
        t0 = time.perf_counter()
        fid = fidelity(model, circuit, eval_images, eval_labels, config, progress=progress)
        seconds["fidelity"] = time.perf_counter() - t0
    if "correlation" in experiments:
        t0 = time.perf_counter()
        cor = correlation(model, circuit, images, config, progress=progress, engines=engines)
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
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
