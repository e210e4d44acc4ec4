"""Plain frozen dataclasses for a NeurFlow circuit of one (model, class).

A :class:`Circuit` holds both circuits of the paper:

* the core concept neuron hypertree H_c (Section 3.4): per target neuron its core neurons
  (:class:`CoreNeurons`), its semantic groups (:class:`SemanticGroup`) and the weighted
  branches from each core neuron to each semantic group (:class:`HypertreeEdge`, Eq. 4);
* the concept circuit C_c (Section 3.5): neuron groups per layer (:class:`NeuronGroup`)
  and the weighted edges between groups of adjacent layers (:class:`GroupEdge`).

Saving and loading live in :mod:`neurflow.artifact`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .patches import PatchGrid

__all__ = [
    "SCHEMA_VERSION",
    "AGGREGATES",
    "NeuronRef",
    "CircuitConfig",
    "SemanticGroup",
    "CoreNeurons",
    "HypertreeEdge",
    "GroupMember",
    "NeuronGroup",
    "GroupEdge",
    "Circuit",
]

SCHEMA_VERSION = 1
AGGREGATES = ("eq2", "abs-mean")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True, order=True)
class NeuronRef:
    """A neuron: one channel of a conv layer's output or one unit of a linear layer."""

    layer: str
    channel: int

    @property
    def key(self) -> str:
        return f"{self.layer}:{self.channel}"


@dataclass(frozen=True)
class CircuitConfig:
    """Hyper-parameters of a circuit build (defaults: the paper's Section 4 settings).

    Attributes:
        tau: core concept neurons kept per target (Definition 3).
        k: patches in a neuron concept V_a (Definition 1).
        steps: integration steps N (Eq. 2).
        method: IG quadrature; ``riemann_right`` is Eq. 2 verbatim, see
            :func:`neurflow.attribution.quadrature`.
        aggregate: how per-patch scores rank the core neurons: ``eq2`` is Eq. 2 (sum over
            V_a of the signed per-patch score, then the absolute value); ``abs-mean`` is the
            authors' release (mean over V_a of the absolute per-patch score).
        scales: crop sizes of the patch dataset, as fractions of the image side.
        stride_ratio: crop stride as a fraction of the crop side.
        max_semantic_groups: upper bound of the silhouette search for semantic groups.
        max_neuron_groups: upper bound of the silhouette search for neuron groups.
        n_exemplars: exemplar patches kept per semantic group and per neuron group.
        batch_size: patches per forward pass of the activation pass.
        ig_batch: interpolated inputs per forward pass of integrated gradients.
        map_cache_mb: memory (MiB, on the compute device) for full feature maps of the
            lower layers kept by the activation pass, so that integrated gradients need not
            recompute the prefix for the top-k patches; 0 recomputes them. Results do not
            depend on it beyond floating-point rounding.
        channels_last: run convolution models in the channels_last (NHWC) memory layout
            during the build, which oneDNN and cuDNN run faster; the model is restored
            afterwards. Speed only: results differ by floating-point summation order.
        precision: arithmetic of the activation pass, which ranks every patch for every
            neuron (the top-k concepts V_a) and gives the representative vectors of Eq. 3.
            ``float32`` (default) uses the model's dtype; ``bfloat16`` runs the pass under
            autocast, faster where the hardware has bfloat16 units, with
            activations rounded to 8 mantissa bits, so near-ties in the top-k may swap.
            Integrated gradients run in the model's dtype unless ``ig_precision`` says
            otherwise.
        ig_precision: arithmetic of the integrated-gradients passes (Eq. 2), most of a
            build's work (:func:`neurflow.attribution.ig_precision`): ``fp32`` (default;
            TF32 off on CUDA), ``tf32`` (TF32 matmuls and convolutions on CUDA; the same as
            ``fp32`` on the CPU) or ``bf16`` (bfloat16 autocast, CPU or CUDA). Changes the
            scores by rounding, so near-ties among core neurons may swap. Stored in the
            artifact and the settings key only when not ``fp32``, so artifacts of the
            default stay byte-identical to those built before the option existed.
    """

    tau: int = 16
    k: int = 50
    steps: int = 50
    method: str = "riemann_right"
    aggregate: str = "eq2"
    scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    stride_ratio: float = 0.5
    max_semantic_groups: int = 5
    max_neuron_groups: int = 10
    n_exemplars: int = 16
    batch_size: int = 64
    ig_batch: int = 512
    map_cache_mb: int = 1024
    channels_last: bool = True
    precision: str = "float32"
    ig_precision: str = "fp32"

    def __post_init__(self) -> None:
        from .attribution import IG_PRECISIONS, QUADRATURES

        for name in ("tau", "k", "steps", "max_semantic_groups", "max_neuron_groups", "n_exemplars", "batch_size", "ig_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.map_cache_mb) < 0:
            raise ValueError(f"map_cache_mb must be >= 0, got {self.map_cache_mb}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got '{self.aggregate}'")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.ig_precision not in IG_PRECISIONS:
            raise ValueError(f"ig_precision must be one of {', '.join(IG_PRECISIONS)}, got '{self.ig_precision}'")
        if self.method not in QUADRATURES:
            raise ValueError(f"method must be one of {', '.join(QUADRATURES)}, got '{self.method}'")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))

    def as_dict(self) -> dict:
        """The settings as stored in artifacts and settings keys (JSON types).

        Fields added after artifacts were first written are left out while they hold
        their default (``ig_precision="fp32"``), so those artifacts stay up to date.
        """
        doc = {**asdict(self), "scales": list(self.scales)}
        for name, default in _OMITTED_AT_DEFAULT.items():
            if doc[name] == default:
                del doc[name]
        return doc


# Settings added later, left out of stored configs while at their default (see as_dict).
_OMITTED_AT_DEFAULT = {"ig_precision": "fp32"}


@dataclass(frozen=True)
class SemanticGroup:
    """One semantic group V_{a,j} of a neuron's concept (Section 3.4).

    Attributes:
        neuron: the neuron a whose top-k patches were clustered.
        index: j, numbered from 0 by first appearance in activation order.
        patch_ids: the group's patches (ids into the circuit's patch grid), highest
            activation first.
        activations: ``phi_a(v)`` of each patch in ``patch_ids``.
        exemplar_ids: up to ``n_exemplars`` patches, closest to the group centre first.
        space: the layer whose spatial-mean activations represent the patches (Eq. 3): the
            layer below ``neuron.layer`` in the circuit, or the neuron's own layer for the
            lowest layer, which has none below it.
        vector: the representative activation vector ``r_{a,j}`` (mean of the members' Eq. 3
            vectors), used for neuron grouping and the cross-class concept atlas.
    """

    neuron: NeuronRef
    index: int
    patch_ids: tuple[int, ...]
    activations: tuple[float, ...]
    exemplar_ids: tuple[int, ...]
    space: str
    vector: np.ndarray = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.neuron.key}:{self.index}"

    @property
    def mean_activation(self) -> float:
        return float(np.mean(self.activations)) if self.activations else 0.0


@dataclass(frozen=True)
class CoreNeurons:
    """The core concept neurons of one target neuron (Definition 3, Eq. 2).

    Attributes:
        target: the target neuron a.
        lower_layer: the layer of the core neurons.
        concept: V_a, the ids of the top-k patches of a, highest activation first.
        core: channels of ``lower_layer``, most important first (top tau of |score|).
        scores: the importance score of each core channel (as ranked, see
            :attr:`CircuitConfig.aggregate`).
        signed: the signed Eq. 2 sum ``T(a, s, V_a)`` of each core channel.
        all_scores: the ranking score of every channel of ``lower_layer`` (length C).
    """

    target: NeuronRef
    lower_layer: str
    concept: tuple[int, ...]
    core: tuple[int, ...]
    scores: tuple[float, ...]
    signed: tuple[float, ...]
    all_scores: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class HypertreeEdge:
    """A branch of the hypertree: core neuron ``child`` into semantic group ``group`` of ``parent``.

    Attributes:
        weight: ``w(a, s_i, V_{a,j})`` of Eq. 4 (signed; the absolute weights into one
            semantic group sum to 1).
        importance: ``T(a, s_i, V_{a,j})``, the unnormalised Eq. 2 score over the group.
    """

    child: NeuronRef
    parent: NeuronRef
    group: int
    weight: float
    importance: float


@dataclass(frozen=True)
class GroupMember:
    """One (neuron, semantic group) pair assigned to a neuron group."""

    neuron: NeuronRef
    semantic_group: int


@dataclass(frozen=True)
class NeuronGroup:
    """A neuron group G of one layer and its concept (Section 3.5).

    Attributes:
        members: the semantic groups clustered together; a neuron appears in every group
            that holds one of its semantic groups.
        patch_ids: the group concept, the union of the members' patches (sorted).
        exemplar_ids: up to ``n_exemplars`` of those, closest to the cluster centre first.
        vector: the cluster centre (mean of the members' vectors).
    """

    layer: str
    index: int
    members: tuple[GroupMember, ...]
    patch_ids: tuple[int, ...]
    exemplar_ids: tuple[int, ...]
    vector: np.ndarray = field(compare=False, repr=False)

    @property
    def neurons(self) -> tuple[NeuronRef, ...]:
        return tuple(sorted({m.neuron for m in self.members}))

    @property
    def key(self) -> str:
        return f"{self.layer}:g{self.index}"


@dataclass(frozen=True)
class GroupEdge:
    """An edge of the concept circuit: child group (lower layer) into parent group.

    Attributes:
        weight: ``W(G_i, G_j)``, the sum of the hypertree weights ``w(s_p, s_q, V_{G_j,p})``
            over members ``(s_p, V_{G_j,p})`` of the parent and neurons ``s_q`` of the child.
        n_edges: how many hypertree branches that sum has.
    """

    child_layer: str
    child_index: int
    parent_layer: str
    parent_index: int
    weight: float
    n_edges: int


@dataclass(frozen=True)
class Circuit:
    """Both NeurFlow circuits of one class, with everything a graph loader needs.

    Attributes:
        model_name: a name for the model (e.g. ``resnet50``).
        model_fingerprint: sha256 of the weights (see :func:`neurflow.fingerprint.model_fingerprint`).
        class_index: the logit unit of the class.
        class_name: a human name for the class.
        layers: layer names, logit layer first.
        config: the build settings.
        image_ids: one id per image of D_c (e.g. a path relative to the data root), in
            image-index order.
        data_fingerprint: sha256 of the preprocessed images and their ids.
        patches: the patch grid D (ids are row indices).
        targets: the core-neuron result of every target neuron, top layer first.
        semantic_groups: the semantic groups of every neuron of the circuit.
        edges: the hypertree branches (Eq. 4).
        groups: the neuron groups of every layer.
        group_edges: the concept circuit's edges.
        neuron_activations: ``{layer: (channels [n], activations [P, n])}``, the
            spatial-mean activation of every circuit neuron on every patch (float32).
        environment: versions of the software that built it.
    """

    model_name: str
    model_fingerprint: str
    class_index: int
    class_name: str
    layers: tuple[str, ...]
    config: CircuitConfig
    image_ids: tuple[str, ...]
    data_fingerprint: str
    patches: PatchGrid
    targets: tuple[CoreNeurons, ...]
    semantic_groups: tuple[SemanticGroup, ...]
    edges: tuple[HypertreeEdge, ...]
    groups: tuple[NeuronGroup, ...]
    group_edges: tuple[GroupEdge, ...]
    neuron_activations: dict[str, tuple[np.ndarray, np.ndarray]] = field(compare=False, repr=False)
    environment: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def root(self) -> NeuronRef:
        return NeuronRef(self.layers[0], self.class_index)

    def neurons(self, layer: str | None = None) -> tuple[NeuronRef, ...]:
        """Every neuron of the hypertree (optionally of one layer), sorted."""
        found = {self.root} | {e.child for e in self.edges}
        return tuple(sorted(n for n in found if layer is None or n.layer == layer))

    def semantic_groups_of(self, neuron: NeuronRef) -> tuple[SemanticGroup, ...]:
        return tuple(sg for sg in self.semantic_groups if sg.neuron == neuron)

    def groups_of(self, layer: str) -> tuple[NeuronGroup, ...]:
        return tuple(g for g in self.groups if g.layer == layer)

    def core_of(self, neuron: NeuronRef) -> CoreNeurons:
        for t in self.targets:
            if t.target == neuron:
                return t
        raise KeyError(f"{neuron.key} is not a target neuron of this circuit")

    def activation(self, neuron: NeuronRef) -> np.ndarray:
        """``phi_neuron(v)`` for every patch v of D."""
        if neuron.layer not in self.neuron_activations:
            raise KeyError(f"{neuron.key} is not a neuron of this circuit")
        channels, acts = self.neuron_activations[neuron.layer]
        hits = np.nonzero(channels == neuron.channel)[0]
        if hits.size == 0:
            raise KeyError(f"{neuron.key} is not a neuron of this circuit")
        return acts[:, int(hits[0])]
