"""Path figures of a concept circuit, computed at load time by dynamic programs (no database here).

A class's neuron groups form a layered DAG: FLOWS_TO goes from a child group to a parent group
one layer up, with ``share`` = |W(child, parent)| / (sum of |W| into that parent). A path from a
group up to the class's root group (depth 0) has

* ``weight`` = the product of the shares along it: the fraction of the root's attribution
  routed along the path (the weights of all paths from one depth sum to at most 1);
* ``signed`` = sign(product of the signed W along it) x ``weight``: the same magnitude, in
  [-1, 1], with the sign telling whether the chain excites (+) or inhibits (-) the logit. The
  product of raw W values is not stored: at depth 11 it reached 2.46e17 and means nothing.

Per group the loader stores (see :func:`path_figures`):

* ``root_share`` = the sum of ``weight`` over all the group's paths to the root (the fraction
  of the root's attribution through the group), by the recursion
  ``root_share(g) = sum over parents p of share(g, p) * root_share(p)``, ``root_share(root) = 1``;
* ``n_paths``, the number of such paths (same recursion with counts);
* ``best_path``, the largest ``weight`` (null when the group has no path to the root);
* its ``top`` paths: the ``k`` strongest, by a k-best dynamic program (a group's k best paths
  continue through its parents' k best), ordered as the old path-enumerating queries ordered
  them: ``weight`` descending, then the path's group uids as one string ascending.

All of it costs O(edges x k x log k) per class instead of enumerating the up to 10^(depth - 1)
paths. The stored ``weight`` of a path is multiplied left to right from its start group, as
``reduce(w = 1.0, r IN relationships(p) | w * r.share)`` did, so values agree to the last bit
with the old queries. The k-best selection keeps near-ties of the k-th path (weights equal up to
rounding) and re-ranks them on the left-to-right products, so it may differ from exhaustive
enumeration only among more than k paths tied to rounding at the k-th place, or among paths of
weight exactly 0 (an edge with W = 0, which real circuits do not have), ranked by uid only as
far as the parents' kept lists reach.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["TOP_PATHS", "GroupPaths", "PathEdge", "path_figures", "brute_force_paths", "INT64_MAX"]

#: Paths kept per group by default (trace_group_up returns at most these; trace_class at most
#: these when some group at its start depth has more paths).
TOP_PATHS = 20
INT64_MAX = 2**63 - 1
_TIE = 1e-9  # relative: products of the same shares in another order agree far closer than this


@dataclass(frozen=True)
class PathEdge:
    """One FLOWS_TO edge: child key -> parent key (keys are any hashable, e.g. group uids)."""

    child: str
    parent: str
    share: float
    weight: float


@dataclass
class GroupPaths:
    """The path figures of one group (see the module docstring)."""

    root_share: float
    n_paths: int
    #: the kept paths, strongest first: (weight, signed, [group keys from this group up to the root])
    top: list[tuple[float, float, list[str]]] = field(default_factory=list)

    @property
    def best_path(self) -> float | None:
        return self.top[0][0] if self.top else None


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def path_figures(depth: Mapping[str, int], edges: Iterable[PathEdge], k: int = TOP_PATHS) -> dict[str, GroupPaths]:
    """Root shares, path counts and the ``k`` strongest paths to the root of every group.

    Args:
        depth: group key -> depth (0 = the root layer; every hop of a path goes one depth up).
        edges: FLOWS_TO edges between the groups (child one depth below its parent).
        k: paths kept per group (at least 1).

    Returns:
        group key -> :class:`GroupPaths`. Groups at depth 0 have one path of length 0 (weight 1).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    ups: dict[str, list[PathEdge]] = defaultdict(list)
    for e in edges:
        if depth[e.parent] != depth[e.child] - 1:
            raise ValueError(f"FLOWS_TO {e.child} -> {e.parent} does not go one layer up")
        ups[e.child].append(e)
    out: dict[str, GroupPaths] = {}
    kept: dict[str, list[tuple[float, float, list[str]]]] = {}  # the top k and its near-ties
    for g in sorted(depth, key=lambda g: (depth[g], g)):  # parents before children
        if depth[g] == 0:
            out[g] = GroupPaths(1.0, 1, [(1.0, 1.0, [g])])
            kept[g] = out[g].top
            continue
        share_sum, count = 0.0, 0
        # k-best merge: every parent's kept paths are already in order; a candidate's key is
        # (-weight, tie string) where the tie string is the old queries' "uid uid ... " string
        candidates = []
        for e in ups.get(g, ()):
            p = out[e.parent]
            share_sum += e.share * p.root_share
            count += p.n_paths
            for w, s, chain in kept[e.parent]:
                path = [g, *chain]
                candidates.append((-(e.share * w), "".join(u + " " for u in path), path, e))
        # the k best by the composed product, plus up to k more within rounding of the k-th
        # (a product taken in another order may differ in its last bits): their weights are
        # then recomputed left to right and re-sorted, so near-ties rank as the old queries did
        ranked = heapq.nsmallest(2 * k, candidates, key=lambda c: (c[0], c[1]))
        if len(ranked) > k:
            floor = -ranked[k - 1][0] * (1 - _TIE)
            ranked = ranked[:k] + [c for c in ranked[k:] if -c[0] >= floor and -c[0] > 0]
        top = [_figures(path, ups) for _, _, path, _ in ranked]
        top.sort(key=lambda t: (-t[0], "".join(u + " " for u in t[2])))
        kept[g] = top
        out[g] = GroupPaths(share_sum, min(count, INT64_MAX), top[:k])
    return out


def _figures(path: list[str], ups: Mapping[str, list[PathEdge]]) -> tuple[float, float, list[str]]:
    """(weight, signed, path) with the products taken left to right from the path's start."""
    w, sign = 1.0, 1.0
    for child, parent in zip(path[:-1], path[1:]):
        e = next(x for x in ups[child] if x.parent == parent)
        w = w * e.share
        sign = sign * _sign(e.weight)
    return w, (sign * w if w else 0.0), path


def brute_force_paths(depth: Mapping[str, int], edges: Iterable[PathEdge]) -> dict[str, list[tuple[float, float, list[str]]]]:
    """Every path of every group to the root, by enumeration (for tests; exponential in depth)."""
    ups: dict[str, list[PathEdge]] = defaultdict(list)
    for e in edges:
        ups[e.child].append(e)

    def walk(g: str) -> list[list[str]]:
        if depth[g] == 0:
            return [[g]]
        return [[g, *rest] for e in ups.get(g, ()) for rest in walk(e.parent)]

    out = {}
    for g in depth:
        paths = [_figures(p, ups) for p in walk(g)]
        paths.sort(key=lambda t: (-t[0], "".join(u + " " for u in t[2])))
        out[g] = paths
    return out
