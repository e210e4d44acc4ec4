"""The server-side circuit layout (pure): readable at paper depth, strongest paths exact."""

from __future__ import annotations

import itertools
import random

import pytest

from neurflow.ingest.web.layout import NODE_H, NODE_W, layout_circuit, strongest_paths


def synthetic(layers: int, per_layer: int, seed: int = 0, fan_in: int | None = None) -> list[dict]:
    """A concept circuit shaped like the paper's: one root group, ``per_layer`` groups below it."""
    rng = random.Random(seed)
    groups = []
    for d in range(layers):
        n = 1 if d == 0 else per_layer
        for i in range(n):
            out = []
            if d > 0:
                parents = list(range(1 if d == 1 else per_layer))
                rng.shuffle(parents)
                for j in parents[: fan_in or len(parents)]:
                    out.append({"group": f"L{d - 1}/g{j}", "share": rng.random(), "weight": rng.uniform(-1, 1)})
            groups.append({"group": f"L{d}/g{i}", "layer": f"L{d}", "depth": d, "index": i, "outgoing": out})
    # shares into each parent sum to 1, as FLOWS_TO.share does
    into: dict[str, float] = {}
    for g in groups:
        for e in g["outgoing"]:
            into[e["group"]] = into.get(e["group"], 0.0) + e["share"]
    for g in groups:
        for e in g["outgoing"]:
            e["share"] /= into[e["group"]]
    return groups


def brute_force(groups: list[dict], k: int) -> list[tuple[float, list[str]]]:
    by = {g["group"]: g for g in groups}
    deepest = max(g["depth"] for g in groups)

    def walk(uid):
        g = by[uid]
        if g["depth"] == 0:
            yield 1.0, [uid]
        for e in g["outgoing"]:
            for w, p in walk(e["group"]):
                yield e["share"] * w, [uid, *p]

    paths = [p for g in groups if g["depth"] == deepest for p in walk(g["group"])]
    return sorted(paths, key=lambda c: (-c[0], " ".join(c[1])))[:k]


@pytest.mark.parametrize("seed", range(5))
def test_strongest_paths_equal_enumerating_every_path(seed):
    groups = synthetic(5, 4, seed)
    got = strongest_paths(groups, 5)
    want = brute_force(groups, 5)
    assert [p for _w, p in got] == [p for _w, p in want]
    assert [round(w, 12) for w, _p in got] == [round(w, 12) for w, _p in want]


def test_paper_depth_layout_is_readable():
    """11 layers x 10 groups (10^10 paths): no two groups overlap, rows are ordered by depth, logit on top."""
    groups = synthetic(11, 10, seed=3, fan_in=6)
    lay = layout_circuit(groups)
    assert len(lay.nodes) == 1 + 10 * 10
    assert len(lay.edges) == sum(len(g["outgoing"]) for g in groups)
    for a, b in itertools.combinations(lay.nodes, 2):
        assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y, (a.group, b.group)
    for n in lay.nodes:
        assert 0 <= n.x and n.x + n.w <= lay.width and 0 <= n.y and n.y + n.h <= lay.height
        assert n.w >= NODE_W and n.h >= NODE_H
    ys = {}
    for n in lay.nodes:
        ys.setdefault(n.depth, set()).add(n.y)
    assert all(len(v) == 1 for v in ys.values())
    rows = [ys[d].pop() for d in sorted(ys)]
    assert rows == sorted(rows) and lay.logit[1] + lay.logit[3] < rows[0]
    assert lay.width < 1300 and lay.height < 2300  # scrolls in one direction, not both at once on a laptop
    on = [n for n in lay.nodes if n.on_path]
    assert len(lay.paths) == 3 and {u for _w, p in lay.paths for u in p} == {n.group for n in on}
    assert all(len(p) == 11 for _w, p in lay.paths)
    # widths follow share
    for e in lay.edges:
        assert e.width == pytest.approx(max(0.6, 14.0 * e.share))


def test_barycentre_ordering_reduces_crossings():
    """A crossed two-layer circuit is drawn uncrossed."""
    groups = [
        {"group": "r", "layer": "A", "depth": 0, "index": 0, "outgoing": []},
        {"group": "p0", "layer": "B", "depth": 1, "index": 0, "outgoing": [{"group": "r", "share": 0.5, "weight": 1}]},
        {"group": "p1", "layer": "B", "depth": 1, "index": 1, "outgoing": [{"group": "r", "share": 0.5, "weight": -1}]},
        {"group": "c0", "layer": "C", "depth": 2, "index": 0, "outgoing": [{"group": "p1", "share": 1.0, "weight": 1}]},
        {"group": "c1", "layer": "C", "depth": 2, "index": 1, "outgoing": [{"group": "p0", "share": 1.0, "weight": 1}]},
    ]
    lay = layout_circuit(groups)
    x = {n.group: n.x for n in lay.nodes}
    assert (x["c0"] < x["c1"]) == (x["p1"] < x["p0"])
    assert {e.sign for e in lay.edges} == {1, -1}


def test_empty_circuit():
    lay = layout_circuit([])
    assert lay.nodes == [] and lay.edges == [] and lay.width > 0
