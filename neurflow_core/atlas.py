"""The concept atlas: a vocabulary shared by the circuits of many classes of one model.

Semantic groups and neuron groups are computed per class, so on their own they cannot
answer "which classes use this concept?". The atlas clusters the semantic groups of all
classes at each layer by their representative vectors (the same Eq. 3 space within a
layer) into model-level concepts, and relates neuron groups of different classes that share
neurons (Jaccard similarity of their neuron sets). It is a pure function of the circuits,
so rebuilding it after more classes arrive gives the same answer as building it at once.

Concepts are directions: the vectors are scaled to unit length before clustering. A
representative vector's length says how strongly the patches drive the layer below, which
varies by class (on the demo, several times longer for some classes than for others) and would
otherwise decide the clusters: on the demo world, raw vectors gave two concepts at block2
and at block3, one of them holding every class, with 28-34% of semantic groups in a concept
whose majority ground-truth concept (generator's pixel labels) was their own; unit vectors
give 16-20 concepts there and 76-88% (``tests/ingest/test_planted_bias.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans

from .circuit import Circuit, NeuronRef
from .clustering import canonical_labels, ward_silhouette

__all__ = ["Concept", "ConceptAssignment", "GroupSimilarity", "Atlas", "build_atlas"]

_WARD_LIMIT = 4000  # above this many vectors per layer, k-means replaces Ward (O(n^2) memory)


@dataclass(frozen=True)
class Concept:
    """A model-level concept at one layer: a cluster of semantic groups of many classes.

    ``vector`` is the mean of the members' unit-length representative vectors.
    """

    layer: str
    index: int
    size: int
    classes: tuple[int, ...]
    vector: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class ConceptAssignment:
    """Semantic group ``(class_index, neuron, sg_index)`` expresses concept ``concept`` of ``layer``.

    ``distance``: Euclidean distance of the group's unit-length vector to the concept's
    centre (0 to 2).
    """

    class_index: int
    neuron: NeuronRef
    semantic_group: int
    concept: int
    distance: float


@dataclass(frozen=True)
class GroupSimilarity:
    """Two neuron groups of different classes at the same layer that share neurons."""

    layer: str
    class_a: int
    group_a: int
    class_b: int
    group_b: int
    shared: int
    jaccard: float


@dataclass(frozen=True)
class Atlas:
    concepts: tuple[Concept, ...]
    assignments: tuple[ConceptAssignment, ...]
    similarities: tuple[GroupSimilarity, ...]


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows (a group that drives nothing) stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _cluster(vectors: np.ndarray, max_concepts: int, seed: int) -> np.ndarray:
    if len(vectors) <= _WARD_LIMIT:
        return ward_silhouette(vectors, max_concepts)
    from sklearn.metrics import silhouette_score

    best: np.ndarray | None = None
    best_score = -np.inf
    for count in range(2, max_concepts + 1):
        labels = KMeans(n_clusters=count, n_init=3, random_state=seed).fit_predict(vectors)
        score = silhouette_score(vectors, labels, sample_size=min(len(vectors), 4000), random_state=seed)
        if score > best_score:
            best, best_score = labels, score
    assert best is not None  # count 2 always scores above -inf
    return canonical_labels(best)


def build_atlas(circuits: Sequence[Circuit], *, max_concepts: int = 20, min_jaccard: float = 0.1, top_similar: int = 10, seed: int = 0) -> Atlas:
    """Cluster semantic groups of all classes into concepts, and relate similar neuron groups.

    Args:
        circuits: circuits of one model (one per class; order does not matter).
        max_concepts: upper bound of the silhouette search per layer.
        min_jaccard: smallest Jaccard similarity of two neuron groups' neuron sets to keep.
        top_similar: most similar groups kept per neuron group.
        seed: for k-means on very large layers.

    Raises:
        ValueError: circuits of different models, or one class twice.
    """
    circuits = sorted(circuits, key=lambda c: c.class_index)
    if len({c.model_fingerprint for c in circuits}) > 1:
        raise ValueError("the concept atlas needs circuits of one model (different model fingerprints given)")
    if len({c.class_index for c in circuits}) != len(circuits):
        raise ValueError("the concept atlas got two circuits of the same class")
    concepts: list[Concept] = []
    assignments: list[ConceptAssignment] = []
    layers = sorted({(sg.neuron.layer, sg.space) for c in circuits for sg in c.semantic_groups})
    for layer, space in layers:
        items = [(c.class_index, sg) for c in circuits for sg in c.semantic_groups if sg.neuron.layer == layer and sg.space == space]
        vectors = _unit(np.stack([sg.vector for _, sg in items]).astype(np.float64))
        labels = _cluster(vectors, max_concepts, seed)
        base = len([k for k in concepts if k.layer == layer])
        for j in range(int(labels.max()) + 1):
            rows = np.nonzero(labels == j)[0]
            centre = vectors[rows].mean(0)
            concepts.append(Concept(layer, base + j, len(rows), tuple(sorted({items[r][0] for r in rows})), centre.astype(np.float32)))
            for r in rows:
                cls, sg = items[r]
                assignments.append(ConceptAssignment(cls, sg.neuron, sg.index, base + j, float(np.linalg.norm(vectors[r] - centre))))
    similarities: list[GroupSimilarity] = []
    layer_names = sorted({g.layer for c in circuits for g in c.groups})
    for layer in layer_names:
        groups = [(c.class_index, g.index, {n.channel for n in g.neurons}) for c in circuits for g in c.groups if g.layer == layer]
        candidates: dict[tuple[int, int], list[GroupSimilarity]] = {}
        for i, (ca, ga, sa) in enumerate(groups):
            for cb, gb, sb in groups[i + 1 :]:
                if ca == cb:
                    continue
                shared = len(sa & sb)
                if not shared:
                    continue
                jac = shared / len(sa | sb)
                if jac >= min_jaccard:
                    sim = GroupSimilarity(layer, ca, ga, cb, gb, shared, jac)
                    candidates.setdefault((ca, ga), []).append(sim)
                    candidates.setdefault((cb, gb), []).append(sim)
        keep: set[GroupSimilarity] = set()
        for sims in candidates.values():
            sims.sort(key=lambda s: (-s.jaccard, s.class_a, s.group_a, s.class_b, s.group_b))
            keep.update(sims[:top_similar])
        similarities.extend(sorted(keep, key=lambda s: (s.layer, s.class_a, s.group_a, s.class_b, s.group_b)))
    return Atlas(tuple(concepts), tuple(assignments), tuple(similarities))
