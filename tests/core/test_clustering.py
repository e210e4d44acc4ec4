"""Ward + silhouette clustering (neurflow.clustering) and the semantic groups of a built circuit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from neurflow.clustering import canonical_labels, closest_to_centre, ward_silhouette


def _planted_blobs(n_clusters: int, seed: int, per_cluster: int = 7, dim: int = 6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    centres *= 10.0 / np.linalg.norm(centres, axis=1, keepdims=True)  # on a sphere of radius 10
    truth = np.repeat(np.arange(n_clusters), per_cluster)
    points = centres[truth] + 0.1 * rng.normal(size=(len(truth), dim))
    order = rng.permutation(len(truth))
    return points[order], truth[order]


@pytest.mark.parametrize("n_clusters", [2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_planted_clusters(n_clusters, seed):
    points, truth = _planted_blobs(n_clusters, seed)
    labels = ward_silhouette(points, max_clusters=8)
    assert labels.dtype == np.int64 and labels.shape == truth.shape
    assert len(np.unique(labels)) == n_clusters
    assert adjusted_rand_score(truth, labels) == 1.0


def test_labels_are_numbered_by_first_appearance():
    points, _ = _planted_blobs(4, 3)
    labels = ward_silhouette(points, max_clusters=8)
    firsts = [int(np.nonzero(labels == lab)[0][0]) for lab in range(labels.max() + 1)]
    assert labels[0] == 0 and firsts == sorted(firsts)
    assert canonical_labels(np.array([5, 5, 2, 7, 2, 0])).tolist() == [0, 0, 1, 2, 1, 3]
    assert canonical_labels(np.array([], dtype=np.int64)).tolist() == []


def test_max_clusters_bounds_the_search():
    points, truth = _planted_blobs(5, 0)
    labels = ward_silhouette(points, max_clusters=3)
    assert len(np.unique(labels)) <= 3
    # min_clusters above the true count forces more clusters
    assert len(np.unique(ward_silhouette(_planted_blobs(2, 0)[0], max_clusters=6, min_clusters=4))) >= 4


@pytest.mark.parametrize(
    "vectors,max_clusters",
    [
        (np.zeros((1, 3)), 5),
        (np.array([[0.0, 0.0], [5.0, 5.0]]), 5),
        (np.ones((6, 4)), 5),
        (_planted_blobs(3, 0)[0], 1),
        (np.zeros((0, 3)), 5),
    ],
    ids=["one", "two", "identical", "max_clusters=1", "empty"],
)
def test_degenerate_inputs_give_one_cluster(vectors, max_clusters):
    labels = ward_silhouette(vectors, max_clusters=max_clusters)
    assert labels.tolist() == [0] * len(vectors)
    assert labels.dtype == np.int64


def test_few_distinct_vectors():
    # 6 vectors, 2 distinct: at most 2 clusters, and the split is the obvious one
    x = np.array([[0.0, 0.0]] * 3 + [[4.0, 4.0]] * 3)
    assert ward_silhouette(x, max_clusters=5).tolist() == [0, 0, 0, 1, 1, 1]


def test_bad_vectors():
    for value in (np.nan, np.inf):
        x = np.zeros((5, 3))
        x[2, 1] = value
        with pytest.raises(ValueError, match="cannot cluster NaN or infinite vectors"):
            ward_silhouette(x, max_clusters=3)
    with pytest.raises(ValueError, match=r"vectors must be \[n, d\], got shape \(5,\)"):
        ward_silhouette(np.zeros(5), max_clusters=3)


def test_closest_to_centre():
    x = np.array([[10.0, 0.0], [1.0, 0.0], [-3.0, 0.0], [0.0, 0.0]])  # mean (2, 0)
    assert closest_to_centre(x).tolist() == [1, 3, 2, 0]
    assert closest_to_centre(x, limit=2).tolist() == [1, 3]


# -- semantic and neuron groups inside a built circuit --------------------------------------


def test_semantic_groups_partition_each_concept(tiny_circuit):
    c = tiny_circuit
    k = c.config.k
    for target in c.targets:
        groups = c.semantic_groups_of(target.target)
        assert 1 <= len(groups) <= c.config.max_semantic_groups
        assert [g.index for g in groups] == list(range(len(groups)))
        members = [p for g in groups for p in g.patch_ids]
        assert len(members) == len(set(members)) == k  # disjoint, sizes sum to k
        assert set(members) == set(target.concept)  # union = V_a
        assert len(target.concept) == k
        for g in groups:
            assert g.space == target.lower_layer
            # in concept order (highest activation first)
            pos = [target.concept.index(p) for p in g.patch_ids]
            assert pos == sorted(pos)
            assert list(g.activations) == sorted(g.activations, reverse=True)
            assert set(g.exemplar_ids) <= set(g.patch_ids)
            assert len(g.exemplar_ids) == min(len(g.patch_ids), c.config.n_exemplars)
            assert g.vector.shape == (_WIDTH[target.lower_layer],)  # Eq. 3: one entry per channel below
        # group 0 holds the top patch
        assert groups[0].patch_ids[0] == target.concept[0]


_WIDTH = {"fc": 4, "c3": 16, "c2": 16, "c1": 8}  # channels of the tiny CNN's layers


def test_lowest_layer_semantic_groups_use_their_own_space(tiny_circuit):
    c = tiny_circuit
    lowest = c.layers[-1]
    neurons = c.neurons(lowest)
    assert neurons
    for n in neurons:
        groups = c.semantic_groups_of(n)
        assert groups and all(g.space == lowest for g in groups)
        assert sum(len(g.patch_ids) for g in groups) == c.config.k
        assert all(g.vector.shape == (_WIDTH[lowest],) for g in groups)
