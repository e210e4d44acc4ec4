"""The query files the web explorer added (class_circuit, group_exemplars, media_files), on a loaded graph."""

from __future__ import annotations

import json

from neurflow.queries import get_query


def test_class_circuit_returns_every_group_and_edge_of_the_class(web_graph):
    conn = web_graph.conn
    rows = web_graph.run("class_circuit", **{"class": "bee"})
    expected = conn.driver.execute_query(
        "MATCH (c:Class {name: 'bee'})-[:HAS_GROUP]->(g:NeuronGroup) RETURN g.uid AS uid", database_=conn.database).records
    assert sorted(r["group"] for r in rows) == sorted(r["uid"] for r in expected)
    assert [list(r.keys()) for r in rows][0] == list(get_query("class_circuit").column_names)
    assert [(r["depth"], r["index"]) for r in rows] == sorted((r["depth"], r["index"]) for r in rows)
    assert sum(r["root"] for r in rows) == 1 and rows[0]["depth"] == 0
    n_edges = conn.driver.execute_query(
        "MATCH (c:Class {name: 'bee'})-[:HAS_GROUP]->(g)-[r:FLOWS_TO]->() RETURN count(r) AS n", database_=conn.database).records[0]["n"]
    assert sum(len(r["outgoing"]) for r in rows) == n_edges > 0
    for r in rows:
        shares = [e["share"] for e in r["outgoing"]]
        assert shares == sorted(shares, reverse=True)
        assert r["props"]["uid"] == r["group"]
    assert len({r["layers"][0] for r in rows}) == 1 and len(rows[0]["layers"]) == 4


def test_group_exemplars_keeps_the_given_order_and_limit(web_graph):
    groups = [r["group"] for r in web_graph.run("class_circuit", **{"class": "fish"})]
    wanted = list(reversed(groups))[:3] + ["no/such/group"]
    rows = web_graph.run("group_exemplars", groups=wanted, limit=2)
    assert [r["group"] for r in rows] == wanted[:3]
    for r in rows:
        detail = web_graph.run("group_detail", group=r["group"])[0]
        assert r["exemplars"] == detail["exemplars"][:2]


def test_media_files_resolves_patches_and_images_in_order(web_graph):
    g = web_graph.biased[0]
    detail = web_graph.run("group_detail", group=g)[0]
    patch = detail["exemplars"][0]
    image = next(d for d in detail["drops"] if d["source"] == "fp")
    rows = web_graph.run("media_files", uids=[image["target"], "nothing", patch["patch"]])
    assert [(r["uid"], r["kind"]) for r in rows] == [(image["target"], "image"), (patch["patch"], "patch")]
    assert rows[0]["image"] == image["path"] and rows[0]["thumbnail"] is None
    assert rows[1]["image"] == patch["image"] and rows[1]["box"] == patch["box"] and rows[1]["thumbnail"] == patch["thumbnail"]
    assert json.loads(rows[1]["preprocess"])["input_size"] == 32 and rows[0]["preprocess"] is None
