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
gives the activations :func:`neurflow.metrics.knockout_concepts` computes with forward hooks
on the whole model. :class:`neurflow.intervention.KnockoutEngine` computes the lower maps of
D once per transition (shared by optimality and correlation in :func:`evaluate_circuit`),
runs many sets per segment call, runs a set asked for by several targets once, and computes
only the target's channel of the upper layer where the layer ends in a conv or linear layer
followed by channel-wise modules (the tests check it against hooks and against the
straightforward engine). Fidelity masks like :func:`neurflow.masking.knockout` and
:func:`neurflow.masking.retain` (zeroed channels of layer outputs), computing the network
below the lowest masked layer once for every mask and running the segments above it.

Everything is deterministic for a seed: every random draw comes from a generator seeded by
``(seed, experiment, layer, target, size)``, so results do not depend on the order in which
targets are visited or on which other experiments run.

Nothing here knows about files, databases or command lines; see ``neurflow evaluate``.

Modules: :mod:`.config` (settings), :mod:`.results` (result types), :mod:`.common` (input
checks, seeded draws, the knock-out engine of a transition), one module per experiment
(:mod:`.optimality`, :mod:`.fidelity`, :mod:`.correlation`) and :mod:`.summary` (the summary
rule, :func:`evaluate_circuit`, JSON).
"""

from __future__ import annotations

from .common import knocked_concepts, verify_inputs
from .config import EXPERIMENTS, EvaluationConfig, EvaluationInputError
from .correlation import correlation
from .fidelity import circuit_neurons, fidelity
from .optimality import optimality
from .results import (
    CorrelationCell,
    CorrelationResult,
    CorrelationTarget,
    Evaluation,
    EvaluationSummary,
    FidelityCell,
    FidelityResult,
    OptimalityCase,
    OptimalityCell,
    OptimalityResult,
)
from .summary import evaluate_circuit, summarize, to_jsonable

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
