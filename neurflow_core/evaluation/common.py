"""What the three experiments share: input checks, seeded draws, target sampling, statistics,
and the knock-out engine for one layer transition (:class:`neurflow.intervention.KnockoutEngine`).

Every random draw comes from a generator seeded by ``(seed, experiment, layer, target, size)``
(:func:`_rng`), so results do not depend on the order in which targets are visited or on
which other experiments run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..circuit import Circuit, CoreNeurons, NeuronRef
from ..fingerprint import data_fingerprint, model_fingerprint
from ..intervention import KnockoutEngine, eval_mode, to_model
from ..progress import Bar
from ..segments import ModelSplit, split_model
from .config import EvaluationConfig, EvaluationInputError

__all__ = ["verify_inputs", "knocked_concepts", "Engines"]

#: Knock-out engines of one evaluation, by upper layer: the lower maps of D computed for
#: one experiment serve the next (see :func:`neurflow.evaluation.evaluate_circuit`).
Engines = dict[str, KnockoutEngine]


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


def _engine(engines: Engines | None, split: ModelSplit, upper: str, images: torch.Tensor, circuit: Circuit, config: EvaluationConfig) -> KnockoutEngine:
    """The knock-out engine of ``upper -> lower`` (taken from ``engines`` and kept there when given)."""
    if engines is not None and upper in engines:
        return engines[upper]
    engine = KnockoutEngine(split, upper, images, circuit.patches, batch_size=config.batch_size, max_batch=config.max_batch)
    if engines is not None:
        engines[upper] = engine
    return engine


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
    computed once for every pair (:class:`~neurflow.intervention.KnockoutEngine`).

    Args:
        model: the classifier the circuit was built from.
        circuit: supplies the patch grid D, the layers and k.
        images: ``[I, C, S, S]`` the class images D_c, on the model's device.
        jobs: ``(target, S)`` pairs; every target must be in the same layer, and ``S`` are
            channels of the layer below it (an empty ``S`` gives V_a itself).
        batch_size: patches per prefix call.
        max_batch: inputs per segment call.
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
    images = to_model(model, images)
    with eval_mode(model):
        split = split or split_model(model, circuit.layers)
        engine = KnockoutEngine(split, upper, images, circuit.patches, batch_size=batch_size, max_batch=max_batch)
        concepts = engine.concepts([s for _, s in jobs], [t.channel for t, _ in jobs], circuit.config.k, bar=progress)
    return list(concepts)
