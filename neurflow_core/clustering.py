"""Clustering: semantic groups (Section 3.4, Eq. 3) and neuron groups (Section 3.5).

Both are Ward agglomerative clustering (scikit-learn) of representative activation
vectors, with the number of clusters chosen by the silhouette score.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import silhouette_score

__all__ = ["ward_silhouette", "canonical_labels", "closest_to_centre"]


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster labels by first appearance (0, 1, 2, ...), making them reproducible."""
    mapping: dict[int, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(labels.tolist()):
        out[i] = mapping.setdefault(lab, len(mapping))
    return out


def ward_silhouette(vectors: np.ndarray, max_clusters: int, min_clusters: int = 2) -> np.ndarray:
    """Ward clustering with the number of clusters chosen by silhouette score.

    Tries every count in ``[min_clusters, min(max_clusters, n - 1)]`` and keeps the best
    silhouette (the smallest count on ties). Degenerate inputs give one cluster: fewer than
    three vectors, all vectors identical, or ``max_clusters < 2``.

    Args:
        vectors: ``[n, d]`` representative vectors.
        max_clusters: upper bound on the number of clusters.
        min_clusters: lower bound (2 as in the paper).

    Returns:
        ``[n]`` int64 labels, numbered by first appearance.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2:
        raise ValueError(f"vectors must be [n, d], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("cannot cluster NaN or infinite vectors")
    upper = min(max_clusters, n - 1)
    if n < 3 or upper < max(min_clusters, 2) or np.ptp(x, axis=0).max(initial=0.0) == 0.0:
        return np.zeros(n, dtype=np.int64)
    distinct = np.unique(x, axis=0).shape[0]
    upper = min(upper, distinct)
    if upper < max(min_clusters, 2):
        return np.zeros(n, dtype=np.int64)
    best_labels, best_score = None, -np.inf
    for count in range(max(min_clusters, 2), upper + 1):
        labels = AgglomerativeClustering(n_clusters=count, linkage="ward").fit(x).labels_
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(x, labels)
        if score > best_score + 1e-12:
            best_labels, best_score = labels, score
    if best_labels is None:
        return np.zeros(n, dtype=np.int64)
    return canonical_labels(best_labels)


def closest_to_centre(vectors: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Row indices of ``vectors`` ordered by Euclidean distance to their mean (closest first)."""
    x = np.asarray(vectors, dtype=np.float64)
    d = cdist(x, x.mean(0, keepdims=True)).ravel()
    order = np.argsort(d, kind="stable")
    return order if limit is None else order[:limit]
