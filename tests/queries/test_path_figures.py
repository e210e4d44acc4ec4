"""The precomputed path figures (ingest/graph/path_figures.py, GroupPaths nodes, NeuronGroup.root_share /
best_path / n_paths) against path enumeration.

* Without a database: the dynamic programs against brute-force enumeration on random layered
  DAGs (k-best cut, zero and negative weights, groups without a path to the root).
* On the test graph (``loaded``, tests/queries/conftest.py): trace_class, trace_group_up,
  group_detail and concept_classes against the path-enumerating query texts they replaced
  (kept below, as they were before the figures were precomputed), row for row.
"""

from __future__ import annotations

import math
import random

import pytest

from neurflow.ingest.graph.path_figures import PathEdge, brute_force_paths, path_figures

# --------------------------------------------------------------------------- the dynamic programs


def random_dag(seed: int, layers: int, width: int, density: float) -> tuple[dict[str, int], list[PathEdge]]:
    rnd = random.Random(seed)
    depth = {"r": 0}
    by_depth = {0: ["r"]}
    for d in range(1, layers):
        by_depth[d] = [f"d{d}/g{i}" for i in range(rnd.randint(1, width))]
        depth.update({g: d for g in by_depth[d]})
    raw = []
    for d in range(1, layers):
        for child in by_depth[d]:
            for parent in by_depth[d - 1]:
                if rnd.random() < density:
                    # W exactly 0 (weight-0 paths, ranked among themselves by uid only as far as the
                    # DP kept them) does not occur in real circuits; equal |W| (exact ties) does here
                    w = rnd.choice([rnd.uniform(-2, 2), rnd.uniform(-2, 2), 1.0, -1.0])
                    raw.append((child, parent, w))
    into = {}
    for _, p, w in raw:
        into[p] = into.get(p, 0.0) + abs(w)
    edges = [PathEdge(c, p, abs(w) / into[p] if into[p] > 0 else 0.0, w) for c, p, w in raw]
    return depth, edges


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [1, 3, 1000])
def test_dynamic_programs_equal_enumeration(seed, k):
    depth, edges = random_dag(seed, layers=5 + seed % 3, width=4, density=0.6)
    fig = path_figures(depth, edges, k)
    brute = brute_force_paths(depth, edges)
    for g, paths in brute.items():
        f = fig[g]
        assert f.n_paths == len(paths)
        assert f.root_share == pytest.approx(sum(w for w, _, _ in paths), rel=1e-12, abs=1e-15)
        assert f.best_path == (paths[0][0] if paths else None)
        assert len(f.top) == min(k, len(paths))
        # the k strongest paths, in the old queries' order (weight desc, uid string asc)
        assert [p for _, _, p in f.top] == [p for _, _, p in paths[: len(f.top)]]
        for (w, s, path), (bw, bs, _) in zip(f.top, paths):
            assert w == bw and s == bs
            assert abs(s) == w
            sign = math.prod(math.copysign(1.0, e.weight) if e.weight else 0.0
                             for a, b in zip(path[:-1], path[1:]) for e in edges if (e.child, e.parent) == (a, b))
            assert s == sign * w
    assert sum(w for g in depth if depth[g] == max(depth.values()) for w, _, _ in brute[g]) <= 1 + 1e-12


def test_a_group_without_a_path_and_a_deep_chain():
    depth = {"r": 0, "a": 1, "b": 2, "lonely": 2}
    edges = [PathEdge("a", "r", 1.0, -3.0), PathEdge("b", "a", 1.0, 5.0)]
    fig = path_figures(depth, edges, 5)
    assert (fig["lonely"].n_paths, fig["lonely"].root_share, fig["lonely"].best_path, fig["lonely"].top) == (0, 0.0, None, [])
    assert fig["b"].top == [(1.0, -1.0, ["b", "a", "r"])]
    with pytest.raises(ValueError, match="one layer up"):
        path_figures({"r": 0, "x": 2}, [PathEdge("x", "r", 1.0, 1.0)])


def test_paper_depth_counts_without_enumerating():
    # 11 layers of 10 groups, every group feeding every group above: 10^9 paths per deepest group
    depth = {"r": 0, **{f"{d}/{i}": d for d in range(1, 11) for i in range(10)}}
    edges = [PathEdge(f"{d}/{i}", f"{d - 1}/{j}" if d > 1 else "r", 0.1, 1.0) for d in range(1, 11) for i in range(10)
             for j in range(10 if d > 1 else 1)]
    fig = path_figures(depth, edges, 20)
    assert fig["10/3"].n_paths == 10**9
    assert fig["10/3"].root_share == pytest.approx(0.1)  # each of the 10 deepest groups carries a tenth
    assert len(fig["10/3"].top) == 20 and fig["10/3"].top[0][0] == pytest.approx(1e-10)


# --------------------------------------------------------------------------- old queries vs new

#: trace_class, trace_group_up and the root_share / best_path parts of group_detail and
#: concept_classes as they were before the figures were precomputed: every FLOWS_TO path
#: enumerated and reduced (signed_weight then was the product of the raw W).
OLD_TRACE_CLASS = """
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class) IN [c.uid, c.name, toString(c.index)]
MATCH (c)-[:ROOT]->(root:NeuronGroup)
CALL (c) {
  MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
  RETURN max(g.depth) AS deepest
}
WITH c, root, CASE WHEN $depth IS NULL OR $depth > deepest THEN deepest ELSE $depth END AS start_depth
MATCH p = (start:NeuronGroup)-[:FLOWS_TO*0..]->(root)
WHERE start.class = c.uid AND start.depth = start_depth
WITH c, p,
     reduce(w = 1.0, r IN relationships(p) | w * r.share) AS weight,
     reduce(w = 1.0, r IN relationships(p) | w * r.weight) AS signed_weight,
     reduce(s = '', n IN nodes(p) | s + n.uid + ' ') AS tie
ORDER BY weight DESC, tie
WITH c, collect({path: p, weight: weight, signed_weight: signed_weight})[..$limit] AS top
UNWIND range(0, size(top) - 1) AS i
WITH c, i + 1 AS rank, top[i] AS t
RETURN rank, t.weight AS weight, t.signed_weight AS signed_weight, [n IN nodes(t.path) | n.uid] AS groups,
       [r IN relationships(t.path) | r.share] AS shares
ORDER BY rank
"""

OLD_TRACE_GROUP_UP = """
MATCH (g:NeuronGroup {uid: $group})
MATCH (c:Class {uid: g.class})-[:ROOT]->(root:NeuronGroup)
MATCH p = (g)-[:FLOWS_TO*0..]->(root)
WITH g, c, p,
     reduce(w = 1.0, r IN relationships(p) | w * r.share) AS weight,
     reduce(w = 1.0, r IN relationships(p) | w * r.weight) AS signed_weight,
     reduce(s = '', n IN nodes(p) | s + n.uid + ' ') AS tie
ORDER BY weight DESC, tie
WITH g, c, sum(weight) AS root_share, collect({path: p, weight: weight, signed_weight: signed_weight}) AS paths
WITH g, c, root_share, paths[..$limit] AS top
UNWIND range(0, size(top) - 1) AS i
WITH g, c, root_share, i + 1 AS rank, top[i] AS t
RETURN rank, t.weight AS weight, t.signed_weight AS signed_weight, root_share, [n IN nodes(t.path) | n.uid] AS groups
ORDER BY rank
"""

OLD_ROOT_SHARE = """
MATCH (g:NeuronGroup {uid: $group})
MATCH (c:Class {uid: g.class})-[:ROOT]->(root:NeuronGroup)
CALL (g, root) {
  MATCH p = (g)-[:FLOWS_TO*0..]->(root)
  WITH reduce(w = 1.0, r IN relationships(p) | w * r.share) AS w
  RETURN sum(w) AS root_share, max(w) AS best_path, count(*) AS n_paths
}
RETURN root_share, best_path, n_paths
"""


def _old(loaded, query: str, **params) -> list[dict]:
    records, _, _ = loaded.conn.driver.execute_query(query, parameters_=params, database_=loaded.conn.database)
    return [dict(r) for r in records]


def _same_paths(new: list[dict], old: list[dict]) -> None:
    assert [r["rank"] for r in new] == [r["rank"] for r in old]
    assert [r["groups"] for r in new] == [r["groups"] for r in old]
    for n, o in zip(new, old):
        assert n["weight"] == pytest.approx(o["weight"], rel=1e-12)
        # the new signed figure: the sign of the old product of W, the magnitude of the weight
        assert n["signed_weight"] == pytest.approx(math.copysign(o["weight"], o["signed_weight"]) if o["signed_weight"] else 0.0, rel=1e-12)


def test_trace_class_equals_the_old_enumeration_at_every_depth_and_limit(loaded):
    checked = 0
    for index, circuit in loaded.art.circuits.items():
        for depth in (*range(len(circuit.layers)), None, 99):
            for limit in (1, 3, 100):
                params = {"class": circuit.class_name, "depth": depth, "limit": limit}
                new = [dict(r) for r in loaded.run("trace_class", **params)]
                old = _old(loaded, OLD_TRACE_CLASS, **params)
                assert old, params
                _same_paths(new, old)
                assert [r["shares"] for r in new] == [pytest.approx(r["shares"]) for r in old]
                checked += len(new)
    assert checked > 100


def test_trace_group_up_group_detail_concept_classes_equal_the_old_enumeration(loaded):
    from neurflow.ingest.graph.schema import group_uid

    seen_paths = 0
    for index, circuit in loaded.art.circuits.items():
        cls = loaded.class_uid(index)
        for g in circuit.groups:
            uid = group_uid(cls, g.layer, g.index)
            for limit in (2, 1000):
                new = [dict(r) for r in loaded.run("trace_group_up", group=uid, limit=limit)]
                old = _old(loaded, OLD_TRACE_GROUP_UP, group=uid, limit=limit)
                _same_paths(new, old)
                assert all(n["root_share"] == pytest.approx(o["root_share"], rel=1e-12) for n, o in zip(new, old))
                seen_paths += len(new)
            (figures,) = _old(loaded, OLD_ROOT_SHARE, group=uid)
            (detail,) = loaded.run("group_detail", group=uid)
            assert detail["root_share"] == pytest.approx(figures["root_share"], rel=1e-12, abs=1e-15)
            stored = _old(loaded, "MATCH (g:NeuronGroup {uid: $uid}) RETURN g.best_path AS best_path, g.n_paths AS n_paths", uid=uid)[0]
            assert stored["n_paths"] == figures["n_paths"]
            assert stored["best_path"] == pytest.approx(figures["best_path"], rel=1e-12)
    assert seen_paths > 50
    for concept in [r["concept"] for r in loaded.run("concepts", limit=1000)]:
        for row in loaded.run("concept_classes", concept=concept):
            (figures,) = _old(loaded, OLD_ROOT_SHARE, group=row["group"])
            assert row["root_share"] == pytest.approx(figures["root_share"], rel=1e-12, abs=1e-15)
            assert row["best_path"] == pytest.approx(figures["best_path"], rel=1e-12)


def test_fewer_kept_paths_cap_the_rows_and_keep_them_exact(loaded):
    """Reload one class keeping 2 paths per group: the queries return at most 2 (exact) paths
    where a group has more, all of them where none does; a reload restores the default."""
    from neurflow.ingest.graph.rows import circuit_rows
    from neurflow.ingest.graph.schema import group_uid
    from neurflow.ingest.graph.writer import write_class
    from neurflow.ingest.pipeline import _run_props, read_artifact

    conn = loaded.conn
    circuit, run, thumbs = read_artifact(loaded.art.dirs[0])
    cls = loaded.class_uid(0)
    try:
        write_class(conn.driver, conn.database, circuit_rows(circuit, run=_run_props(run), artifact_dir=loaded.art.dirs[0].resolve(),
                                                             thumbnails=thumbs, top_paths=2))
        deepest = circuit.layers[-1]
        old = _old(loaded, OLD_TRACE_CLASS, **{"class": "bee", "depth": None, "limit": 100})
        assert len(old) > 2
        new = [dict(r) for r in loaded.run("trace_class", **{"class": "bee", "limit": 100})]
        _same_paths(new, old[:2])
        one_hop = [dict(r) for r in loaded.run("trace_class", **{"class": "bee", "depth": 1, "limit": 100})]
        assert len(one_hop) == len(circuit.groups_of(circuit.layers[1]))  # one path per group: nothing cut
        g = circuit.groups_of(deepest)[0]
        uid = group_uid(cls, g.layer, g.index)
        old_up = _old(loaded, OLD_TRACE_GROUP_UP, group=uid, limit=100)
        new_up = [dict(r) for r in loaded.run("trace_group_up", group=uid, limit=100)]
        _same_paths(new_up, old_up[: len(new_up)])
        assert len(new_up) == min(2, len(old_up))
        assert new_up[0]["root_share"] == pytest.approx(old_up[0]["root_share"])  # root_share still counts every path
    finally:
        write_class(conn.driver, conn.database, loaded.rows[0])
    assert len(loaded.run("trace_class", **{"class": "bee", "limit": 100})) == len(old)
