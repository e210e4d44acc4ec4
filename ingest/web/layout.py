"""Server-side layout of a concept circuit: a layered DAG, logit layer on top (pure, no I/O).

The concept circuit of a class (paper Section 3.5) has one row of neuron groups per
layer and FLOWS_TO edges from a group to groups one layer up. The picture puts the
class logit at the top, then the root group (depth 0), then each layer below it. Inside
a row, groups are ordered by the barycentre of the groups they feed (a few top-down
sweeps of the classic Sugiyama heuristic), which keeps the strongest edges short and
crossings few; rows are centred. Edge widths are proportional to ``share`` and their
colour is the sign of W. The strongest paths (largest product of shares from the
deepest layer to the root, as in ``trace_class``) are computed here by dynamic
programming over the edges, so a circuit of paper depth (11 layers, 10 groups per layer,
10^10 paths) costs a few thousand operations instead of a path enumeration.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["NodeBox", "EdgePath", "Layout", "layout_circuit", "strongest_paths", "NODE_W", "NODE_H"]

NODE_W = 100  # px: a 2x2 grid of 38 px thumbnails, padding, room for the caption
NODE_H = 112  # px: caption + grid
GAP_X = 18
GAP_Y = 64
MARGIN = 24
GUTTER = 56  # px left of the rows, for the layer names
LOGIT_H = 34
MAX_WIDTH = 14.0  # px: the stroke of an edge with share 1


@dataclass(frozen=True)
class NodeBox:
    """Where a group is drawn: top-left corner and size, in px."""

    group: str
    depth: int
    x: float
    y: float
    w: float
    h: float
    on_path: bool = False


@dataclass(frozen=True)
class EdgePath:
    """One FLOWS_TO edge drawn as a cubic curve from the child's top to the parent's bottom."""

    child: str
    parent: str
    d: str
    width: float
    sign: int
    share: float
    weight: float
    on_path: bool = False


@dataclass
class Layout:
    width: float
    height: float
    nodes: list[NodeBox] = field(default_factory=list)
    edges: list[EdgePath] = field(default_factory=list)
    logit: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x, y, w, h of the logit box
    logit_edge: str = ""
    paths: list[tuple[float, list[str]]] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # layer name per depth
    layer_y: list[float] = field(default_factory=list)  # y of each depth's row


def strongest_paths(groups: Sequence[dict], k: int = 3) -> list[tuple[float, list[str]]]:
    """The ``k`` paths with the largest product of ``share`` from the deepest layer to the root.

    Args:
        groups: rows of ``class_circuit`` (``group``, ``depth``, ``outgoing`` with
            ``group`` and ``share``).
        k: paths returned.

    Returns:
        ``(weight, [group uids from the start group up to the root])``, strongest first;
        ties broken by the uids, as ``trace_class`` does.
    """
    by_uid = {g["group"]: g for g in groups}
    if not by_uid:
        return []
    deepest = max(g["depth"] for g in groups)
    best: dict[str, list[tuple[float, list[str]]]] = {}
    for g in sorted(groups, key=lambda r: r["depth"]):
        uid = g["group"]
        if g["depth"] == 0:
            best[uid] = [(1.0, [uid])]
            continue
        cands: list[tuple[float, list[str]]] = []
        for e in g.get("outgoing") or []:
            for w, path in best.get(e["group"], []):
                cands.append((w * float(e["share"] or 0.0), [uid, *path]))
        best[uid] = heapq.nsmallest(k, cands, key=lambda c: (-c[0], " ".join(c[1])))
    starts = [p for g in groups if g["depth"] == deepest for p in best.get(g["group"], [])]
    return heapq.nsmallest(k, starts, key=lambda c: (-c[0], " ".join(c[1])))


def layout_circuit(groups: Sequence[dict], *, n_paths: int = 3) -> Layout:
    """Positions for every group and a curve for every edge of one class's concept circuit.

    Args:
        groups: rows of the ``class_circuit`` query (``group``, ``layer``, ``depth``,
            ``index``, ``outgoing``).
        n_paths: strongest paths to highlight.

    Returns:
        The :class:`Layout` (px coordinates, origin top-left).
    """
    if not groups:
        return Layout(width=2 * MARGIN + NODE_W, height=2 * MARGIN + LOGIT_H)
    depths = sorted({g["depth"] for g in groups})
    rows: dict[int, list[str]] = {d: [g["group"] for g in sorted((g for g in groups if g["depth"] == d), key=lambda r: r["index"])] for d in depths}
    parents: dict[str, list[tuple[str, float]]] = {g["group"]: [(e["group"], float(e["share"] or 0.0)) for e in g.get("outgoing") or []] for g in groups}
    layer_of = {g["depth"]: g["layer"] for g in groups}

    # order each row by the share-weighted barycentre of its parents (top-down sweeps), on
    # one axis for every row: a group's position is the centre of its slot, in units of
    # the widest row
    widest = _widest(rows)
    pos: dict[str, float] = {}

    def place(d: int) -> None:
        n = len(rows[d])
        for i, uid in enumerate(rows[d]):
            pos[uid] = (i + 0.5) / n * widest

    def bary(uid: str) -> float:
        ps = [(pos[p], s) for p, s in parents[uid] if p in pos]
        total = sum(s for _p, s in ps)
        return sum(x * s for x, s in ps) / total if total > 0 else pos[uid]

    for d in depths:
        place(d)
    for _sweep in range(3):
        for d in depths[1:]:
            rows[d].sort(key=lambda u: (bary(u), pos[u]))
            place(d)

    width = GUTTER + 2 * MARGIN + widest * NODE_W + (widest - 1) * GAP_X
    top = MARGIN + LOGIT_H + GAP_Y
    paths = strongest_paths(groups, n_paths)
    on_nodes = {u for _w, p in paths for u in p}
    on_edges = {(p[i], p[i + 1]) for _w, p in paths for i in range(len(p) - 1)}

    boxes: dict[str, NodeBox] = {}
    layer_y: list[float] = []
    for row_i, d in enumerate(depths):
        n = len(rows[d])
        row_w = n * NODE_W + (n - 1) * GAP_X
        x0 = GUTTER + (width - GUTTER - row_w) / 2
        y = top + row_i * (NODE_H + GAP_Y)
        layer_y.append(y)
        for i, uid in enumerate(rows[d]):
            boxes[uid] = NodeBox(uid, d, x0 + i * (NODE_W + GAP_X), y, NODE_W, NODE_H, uid in on_nodes)
    height = top + len(depths) * (NODE_H + GAP_Y) - GAP_Y + MARGIN

    edges: list[EdgePath] = []
    for g in groups:
        child = boxes[g["group"]]
        for e in g.get("outgoing") or []:
            parent = boxes.get(e["group"])
            if parent is None:
                continue
            x1, y1 = child.x + child.w / 2, child.y
            x2, y2 = parent.x + parent.w / 2, parent.y + parent.h
            dy = (y1 - y2) / 2
            d = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 - dy:.1f} {x2:.1f},{y2 + dy:.1f} {x2:.1f},{y2:.1f}"
            share = float(e["share"] or 0.0)
            weight = float(e["weight"] or 0.0)
            edges.append(EdgePath(g["group"], e["group"], d, max(0.6, MAX_WIDTH * share), 1 if weight >= 0 else -1, share, weight,
                                  (g["group"], e["group"]) in on_edges))
    # thin edges first, strongest on top
    edges.sort(key=lambda e: (e.on_path, e.width))

    root = next((boxes[u] for u in rows[depths[0]]), None)
    lw = max(NODE_W, 140)
    centre = GUTTER + (width - GUTTER) / 2
    logit = (centre - lw / 2, MARGIN, lw, LOGIT_H)
    logit_edge = ""
    if root is not None:
        x = root.x + root.w / 2
        logit_edge = f"M{x:.1f},{root.y:.1f} L{centre:.1f},{MARGIN + LOGIT_H:.1f}"
    return Layout(width=width, height=height, nodes=list(boxes.values()), edges=edges, logit=logit, logit_edge=logit_edge,
                  paths=paths, layers=[layer_of[d] for d in depths], layer_y=layer_y)


def _widest(rows: dict[int, list[str]]) -> int:
    return max((len(r) for r in rows.values()), default=1) or 1


def share_label(value: float | None) -> str:
    """A share or weight for a caption: 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"
