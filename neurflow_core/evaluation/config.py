"""Settings of the Section 4 experiments, and the error raised for inputs that are not a circuit's."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArtifactError

__all__ = ["EXPERIMENTS", "EvaluationConfig", "EvaluationInputError"]

EXPERIMENTS: tuple[str, ...] = ("optimality", "fidelity", "correlation")


class EvaluationInputError(ArtifactError):
    """The model or the images are not the ones the circuit was built from.

    An :class:`~neurflow.errors.ArtifactError` (the artifact does not match its inputs), and
    so also a ``ValueError`` as before the error family existed.
    """


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
