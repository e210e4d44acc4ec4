"""Every query of the library against the embedded Bolt server, checked against the artifacts.

The graph (``loaded``, tests/queries/conftest.py) holds 3 classes of a random CNN; the
expected answers are recomputed here from the artifacts (``neurflow.load_circuit``), the
loader's row builders and the concept atlas, so a query that reads the wrong relationship
or property disagrees with them. The registry's own parsing and binding are unit-tested
at the end (no database).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from neurflow.queries import registry
from neurflow.queries.registry import (
    Param,
    ParameterError,
    QueryFileError,
    UnknownQueryError,
    bind_params,
    get_query,
    load_queries,
    parse_cli_params,
    parse_literal,
    parse_param_value,
    parse_query,
)

REQUIRED_QUERIES = {
    "overview", "trace_class", "trace_group_up", "group_detail", "neuron_profile", "compare_classes",
    "similar_classes", "concept_classes", "biased_groups", "fp_causes", "unfaithful_classes",
}


# --------------------------------------------------------------------------- expectations


def gid(cls: str, layer: str, index: int) -> str:
    return f"{cls}/{layer}/g{index}"


def nid(model: str, layer: str, channel: int) -> str:
    return f"{model}/{layer}/{channel}"


def circuit_paths(circuit, cls: str) -> dict[str, list[tuple[list[str], float, float]]]:
    """Every FLOWS_TO chain of the artifact from each group up to the root: start uid -> [(uids, weight, signed)]."""
    into: dict[tuple[str, int], float] = defaultdict(float)
    for e in circuit.group_edges:
        into[(e.parent_layer, e.parent_index)] += abs(e.weight)
    ups: dict[tuple[str, int], list[tuple[tuple[str, int], float, float]]] = defaultdict(list)
    for e in circuit.group_edges:
        total = into[(e.parent_layer, e.parent_index)]
        ups[(e.child_layer, e.child_index)].append(((e.parent_layer, e.parent_index), abs(e.weight) / total if total > 0 else 0.0, e.weight))
    root_layer = circuit.layers[0]

    def walk(node):
        if node[0] == root_layer:
            return [([node], 1.0, 1.0)]
        out = []
        for parent, share, w in ups.get(node, []):
            for chain, weight, signed in walk(parent):
                out.append(([node, *chain], share * weight, w * signed))
        return out

    result = {}
    for g in circuit.groups:
        result[gid(cls, g.layer, g.index)] = [([gid(cls, layer, i) for layer, i in chain], weight, signed) for chain, weight, signed in walk((g.layer, g.index))]
    return result


def neuron_sets(circuit, model: str) -> dict[str, set[str]]:
    """Layer -> the uids of the circuit's neurons there."""
    return {layer: {nid(model, n.layer, n.channel) for n in circuit.neurons(layer)} for layer in circuit.layers}


def rows_of(records) -> list[dict]:
    return [dict(r) for r in records]


# --------------------------------------------------------------------------- all queries

#: Queries that only Neo4j 5 can run (the embedded database lacks full-text indexes).
NEO4J_ONLY = frozenset({"find_concept_fulltext"})


def typical_params(loaded) -> dict[str, dict]:
    """Parameters that give every query a non-empty answer on the test graph."""
    c0 = loaded.art.circuits[0]
    group = gid(loaded.class_uid(0), c0.layers[2], c0.groups_of(c0.layers[2])[0].index)
    concept = loaded.run("concepts", limit=1)[0]["concept"]
    child = c0.edges[0].child
    return {
        "overview": {},
        "classes": {},
        "concepts": {"model": loaded.model},
        "trace_class": {"class": "bee", "limit": 5},
        "trace_group_up": {"group": group},
        "group_detail": {"group": group},
        "neuron_profile": {"neuron": f"{child.layer}:{child.channel}"},
        "compare_classes": {"class_a": "bee", "class_b": "fish"},
        "similar_classes": {"class": "bee"},
        "concept_classes": {"concept": concept},
        "biased_groups": {},
        "fp_causes": {},
        "unfaithful_classes": {},
        "find_concept": {"text": "flowers"},
        "find_concept_fulltext": {"text": "flowers"},
        "class_circuit": {"class": "bee"},
        "group_exemplars": {"groups": [group]},
        "media_files": {"uids": [loaded.run("group_detail", group=group)[0]["exemplars"][0]["patch"]]},
    }


def test_library_has_the_required_queries():
    assert REQUIRED_QUERIES <= set(load_queries())
    packaged = {p.stem for p in (Path(registry.__file__).parent).glob("*.cypher")}
    assert packaged == set(load_queries())


@pytest.mark.parametrize("name", sorted(load_queries()))
def test_query_returns_its_documented_columns(loaded, name):
    params = typical_params(loaded)
    assert set(params) == set(load_queries()), "add typical parameters for the new query"
    if name in NEO4J_ONLY:
        pytest.skip(f"{name} needs Neo4j 5's full-text index; the embedded database has none (test_label_queries.py checks it fails there)")
    records = loaded.run(name, **params[name])
    assert records, f"{name} returned no rows on the test graph"
    for record in records:
        assert list(record.keys()) == list(get_query(name).column_names)


# --------------------------------------------------------------------------- trace_class


def test_trace_class_paths_end_at_the_root_strongest_first(loaded):
    circuit = loaded.art.circuits[0]
    cls = loaded.class_uid(0)
    root = gid(cls, circuit.layers[0], 0)
    records = rows_of(loaded.run("trace_class", **{"class": "bee", "limit": 100}))
    assert {r["class"] for r in records} == {cls}
    assert [r["rank"] for r in records] == list(range(1, len(records) + 1))
    weights = [r["weight"] for r in records]
    assert weights == sorted(weights, reverse=True)
    deepest = len(circuit.layers) - 1
    expected = {tuple(chain): (w, s) for start, chains in circuit_paths(circuit, cls).items() for chain, w, s in chains if start.split("/")[-2] == circuit.layers[deepest]}
    assert len(records) == len(expected)
    for r in records:
        assert r["groups"][-1] == root
        assert r["layers"] == [circuit.layers[deepest - i] for i in range(deepest + 1)]
        w, s = expected[tuple(r["groups"])]
        assert r["weight"] == pytest.approx(w, rel=1e-9)
        # signed_weight = sign(product of the signed W) x weight (was the raw product of W)
        assert r["signed_weight"] == pytest.approx(math.copysign(w, s), rel=1e-9) and abs(r["signed_weight"]) <= 1 + 1e-12
        assert r["weight"] == pytest.approx(math.prod(r["shares"]), rel=1e-9)
        assert [n["uid"] for n in r["path"].nodes] == r["groups"]
        assert all(rel.type == "FLOWS_TO" for rel in r["path"].relationships)
    # the weights of all paths from one depth are fractions of the root's attribution
    assert sum(weights) == pytest.approx(sum(w for w, _ in expected.values()), rel=1e-9)
    assert sum(weights) <= 1 + 1e-9


def test_trace_class_limit_depth_and_class_by_index_or_uid(loaded):
    by_name = rows_of(loaded.run("trace_class", **{"class": "bee", "limit": 3}))
    assert len(by_name) == 3
    for spelled in ("0", 0, loaded.class_uid(0)):
        again = rows_of(loaded.run("trace_class", **{"class": spelled, "limit": 3, "model": "tinyq"}))
        assert [r["groups"] for r in again] == [r["groups"] for r in by_name]
    assert loaded.run("trace_class", **{"class": "bee", "model": "no-such-model"}) == []
    assert loaded.run("trace_class", **{"class": "no-such-class"}) == []
    one_hop = rows_of(loaded.run("trace_class", **{"class": "fish", "depth": 1, "limit": 50}))
    circuit = loaded.art.circuits[1]
    assert len(one_hop) == len(circuit.groups_of(circuit.layers[1]))
    assert all(len(r["groups"]) == 2 for r in one_hop)
    # depth 1: the shares into the single root group sum to 1
    assert sum(r["weight"] for r in one_hop) == pytest.approx(1.0)


# --------------------------------------------------------------------------- trace_group_up


def test_trace_group_up_matches_the_artifact(loaded):
    circuit = loaded.art.circuits[2]
    cls = loaded.class_uid(2)
    paths = circuit_paths(circuit, cls)
    root = gid(cls, circuit.layers[0], 0)
    for g in circuit.groups:
        uid = gid(cls, g.layer, g.index)
        records = rows_of(loaded.run("trace_group_up", group=uid, limit=1000))
        expected = {tuple(chain): w for chain, w, _ in paths[uid]}
        assert len(records) == len(expected)
        assert all(r["groups"][0] == uid and r["groups"][-1] == root and r["group"] == uid and r["class"] == cls for r in records)
        assert {tuple(r["groups"]) for r in records} == set(expected)
        assert [r["weight"] for r in records] == sorted((r["weight"] for r in records), reverse=True)
        total = sum(expected.values())
        assert all(r["root_share"] == pytest.approx(total, rel=1e-9) for r in records)
    top = rows_of(loaded.run("trace_group_up", group=root))
    assert len(top) == 1 and top[0]["groups"] == [root] and top[0]["weight"] == 1.0
    assert loaded.run("trace_group_up", group="no/such/group") == []


# --------------------------------------------------------------------------- group_detail


def test_group_detail_matches_the_artifact_group(loaded):
    model = loaded.model
    for index, circuit in loaded.art.circuits.items():
        cls = loaded.class_uid(index)
        thumbs = loaded.rows[index].rows["patch"]
        thumb_of = {r["props"]["patch_id"]: r["props"]["thumbnail"] for r in thumbs}
        paths = circuit_paths(circuit, cls)
        for g in circuit.groups:
            uid = gid(cls, g.layer, g.index)
            (row,) = rows_of(loaded.run("group_detail", group=uid))
            assert row["group"] == uid and row["class"] == cls and row["class_name"] == circuit.class_name
            assert (row["layer"], row["index"], row["depth"]) == (g.layer, g.index, circuit.layers.index(g.layer))
            assert row["root"] == (g.layer == circuit.layers[0])
            assert row["channels"] == [n.channel for n in g.neurons]
            assert row["neurons"] == [nid(model, n.layer, n.channel) for n in g.neurons]
            members = sorted((m.neuron.channel, m.semantic_group) for m in g.members)
            assert [(s["channel"], s["index"]) for s in row["semantic_groups"]] == members
            assert all(s["concept"] is not None for s in row["semantic_groups"])
            assert [e["patch_id"] for e in row["exemplars"]] == list(g.exemplar_ids)
            assert [e["rank"] for e in row["exemplars"]] == list(range(len(g.exemplar_ids)))
            for e in row["exemplars"]:
                assert e["thumbnail"] == thumb_of[e["patch_id"]] and Path(e["thumbnail"]).is_file()
            incoming = {gid(cls, e.child_layer, e.child_index): e for e in circuit.group_edges if (e.parent_layer, e.parent_index) == (g.layer, g.index)}
            outgoing = {gid(cls, e.parent_layer, e.parent_index): e for e in circuit.group_edges if (e.child_layer, e.child_index) == (g.layer, g.index)}
            assert {e["group"] for e in row["incoming"]} == set(incoming)
            assert {e["group"] for e in row["outgoing"]} == set(outgoing)
            for e in row["incoming"]:
                assert e["weight"] == pytest.approx(incoming[e["group"]].weight) and e["n_edges"] == incoming[e["group"]].n_edges
            if row["incoming"]:
                assert sum(e["share"] for e in row["incoming"]) == pytest.approx(1.0)
            for e in row["outgoing"]:
                assert e["weight"] == pytest.approx(outgoing[e["group"]].weight)
            assert [e["share"] for e in row["incoming"]] == sorted((e["share"] for e in row["incoming"]), reverse=True)
            assert row["root_share"] == pytest.approx(sum(w for _, w, _ in paths[uid]), rel=1e-9)
            planted = loaded.planted.get(uid)
            assert row["bias"]["bias_score"] == (planted["bias_score"] if planted else None)
            assert row["drops"] == []


def test_group_detail_similar_groups_match_the_atlas(loaded):
    similar = [r for r in rows_of(loaded.run("compare_classes", class_a="bee", class_b="fish")) if r["similar_groups"]]
    pair = similar[0]["similar_groups"][0]
    (row,) = rows_of(loaded.run("group_detail", group=pair["group_a"]))
    match = [s for s in row["similar"] if s["group"] == pair["group_b"]]
    assert len(match) == 1 and match[0]["jaccard"] == pytest.approx(pair["jaccard"])
    assert loaded.run("group_detail", group="no/such/group") == []


# --------------------------------------------------------------------------- neuron_profile


def _profile_expected(loaded, layer: str, channel: int) -> dict[tuple[str, str], tuple[int, list[tuple[str, float]]]]:
    """(class uid, parent uid) -> (rank, [(semantic group uid, weight)] by semantic group index), from the artifacts."""
    model = loaded.model
    out: dict[tuple[str, str], tuple[int, list[tuple[str, float]]]] = {}
    for index, circuit in loaded.art.circuits.items():
        cls = loaded.class_uid(index)
        for target in circuit.targets:
            if target.lower_layer != layer or channel not in target.core:
                continue
            branches = sorted((e.group, f"{cls}/{e.parent.layer}/{e.parent.channel}/s{e.group}", e.weight) for e in circuit.edges
                              if e.parent == target.target and (e.child.layer, e.child.channel) == (layer, channel))
            parent = nid(model, target.target.layer, target.target.channel)
            out[(cls, parent)] = (target.core.index(channel), [(uid, w) for _, uid, w in branches])
    return out


def test_neuron_profile_agrees_with_the_artifacts(loaded):
    counts: dict[tuple[str, int], set[int]] = defaultdict(set)
    for index, circuit in loaded.art.circuits.items():
        for e in circuit.edges:
            counts[(e.child.layer, e.child.channel)].add(index)
    (layer, channel), classes = max(counts.items(), key=lambda kv: (len(kv[1]), kv[0]))
    assert len(classes) >= 2, "the test graph should share a neuron between classes"
    expected = _profile_expected(loaded, layer, channel)
    for spelled in (f"{layer}:{channel}", nid(loaded.model, layer, channel)):
        records = rows_of(loaded.run("neuron_profile", neuron=spelled))
        assert {r["neuron"] for r in records} == {nid(loaded.model, layer, channel)}
        assert all(r["role"] == "core" for r in records)
        assert {(r["class"], r["parent"]) for r in records} == set(expected)
        assert len(records) == len(expected)
        assert [r["class_index"] for r in records] == sorted(r["class_index"] for r in records)
        for r in records:
            rank, branches = expected[(r["class"], r["parent"])]
            assert r["rank"] == rank
            assert [(b["semantic_group"], b["weight"]) for b in r["branches"]] == [(u, pytest.approx(w)) for u, w in branches]
            assert all(b["abs_weight"] == pytest.approx(abs(b["weight"])) for b in r["branches"])
            assert r["max_abs_weight"] == pytest.approx(max(abs(w) for _, w in branches))
            index = int(r["class"].rsplit("/c", 1)[1])
            circuit = loaded.art.circuits[index]
            own = sorted({g.index for g in circuit.groups for m in g.members if (m.neuron.layer, m.neuron.channel) == (layer, channel)})
            assert r["groups"] == [gid(r["class"], layer, i) for i in own]
    assert loaded.run("neuron_profile", neuron=f"{layer}:{channel}", model="other-model") == []


def test_neuron_profile_of_a_logit_unit(loaded):
    records = rows_of(loaded.run("neuron_profile", neuron="fc:1"))
    assert [(r["class"], r["role"]) for r in records] == [(loaded.class_uid(1), "logit")]
    assert records[0]["groups"] == [gid(loaded.class_uid(1), "fc", 0)]
    assert records[0]["branches"] == [] and records[0]["rank"] is None and records[0]["parent"] is None


# --------------------------------------------------------------------------- compare / similar


def test_compare_classes_matches_the_artifacts_and_is_symmetric(loaded):
    model = loaded.model
    similarities = _similarities(loaded)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        ab = rows_of(loaded.run("compare_classes", class_a=str(a), class_b=str(b)))
        ba = rows_of(loaded.run("compare_classes", class_a=str(b), class_b=str(a)))
        ca, cb = loaded.art.circuits[a], loaded.art.circuits[b]
        sa, sb = neuron_sets(ca, model), neuron_sets(cb, model)
        assert [r["layer"] for r in ab] == list(ca.layers)
        assert [r["depth"] for r in ab] == list(range(len(ca.layers)))
        for r, s in zip(ab, ba):
            assert (r["class_a"], r["class_b"]) == (s["class_b"], s["class_a"]) == (loaded.class_uid(a), loaded.class_uid(b))
            assert (r["layer"], r["n_a"], r["n_b"], r["shared"], r["shared_channels"]) == (s["layer"], s["n_b"], s["n_a"], s["shared"], s["shared_channels"])
            assert r["jaccard"] == pytest.approx(s["jaccard"])
            shared = sa[r["layer"]] & sb[r["layer"]]
            assert (r["n_a"], r["n_b"], r["shared"]) == (len(sa[r["layer"]]), len(sb[r["layer"]]), len(shared))
            assert r["shared_channels"] == sorted(int(u.rsplit("/", 1)[1]) for u in shared)
            assert r["jaccard"] == pytest.approx(len(shared) / len(sa[r["layer"]] | sb[r["layer"]]))
            pairs_ab = {(p["group_a"], p["group_b"], round(p["jaccard"], 9)) for p in r["similar_groups"]}
            pairs_ba = {(p["group_b"], p["group_a"], round(p["jaccard"], 9)) for p in s["similar_groups"]}
            assert pairs_ab == pairs_ba
            atlas = {
                (gid(loaded.class_uid(x["class_a"]), x["layer"], x["group_a"]), gid(loaded.class_uid(x["class_b"]), x["layer"], x["group_b"]))
                for x in similarities
                if x["layer"] == r["layer"] and {x["class_a"], x["class_b"]} == {a, b}
            }
            assert {frozenset(p[:2]) for p in pairs_ab} == {frozenset(p) for p in atlas}
        assert ab[0]["jaccard"] == 0.0  # the logit layer: two different logit units


def _similarities(loaded) -> list[dict]:
    from neurflow.atlas import build_atlas

    atlas = build_atlas(list(loaded.art.circuits.values()))
    return [{"layer": s.layer, "class_a": s.class_a, "group_a": s.group_a, "class_b": s.class_b, "group_b": s.group_b, "jaccard": s.jaccard} for s in atlas.similarities]


def test_similar_classes_matches_the_artifacts(loaded):
    model = loaded.model

    def below_logit(circuit):
        return {nid(model, n.layer, n.channel) for n in circuit.neurons() if n.layer != circuit.layers[0]}

    mine = below_logit(loaded.art.circuits[0])
    expected = {}
    for index in (1, 2):
        other = below_logit(loaded.art.circuits[index])
        if mine & other:
            expected[loaded.class_uid(index)] = (len(mine & other) / len(mine | other), len(mine & other), len(other))
    records = rows_of(loaded.run("similar_classes", **{"class": "bee"}))
    assert {r["other"] for r in records} == set(expected)
    assert [r["rank"] for r in records] == list(range(1, len(records) + 1))
    assert [r["jaccard"] for r in records] == sorted((r["jaccard"] for r in records), reverse=True)
    for r in records:
        jac, shared, n = expected[r["other"]]
        assert (r["jaccard"], r["shared"], r["n_neurons"], r["n_neurons_query"]) == (pytest.approx(jac), shared, n, len(mine))
    assert len(loaded.run("similar_classes", **{"class": "bee", "limit": 1})) == 1


# --------------------------------------------------------------------------- concepts


def test_concept_classes_matches_the_atlas(loaded):
    from neurflow.atlas import build_atlas

    atlas = build_atlas(list(loaded.art.circuits.values()))
    by_concept = defaultdict(set)
    for a in atlas.assignments:
        by_concept[(a.neuron.layer, a.concept)].add((a.class_index, f"{loaded.class_uid(a.class_index)}/{a.neuron.layer}/{a.neuron.channel}/s{a.semantic_group}"))
    (layer, k), members = max(by_concept.items(), key=lambda kv: (len({c for c, _ in kv[1]}), len(kv[1])))
    concept = f"{loaded.model}/{layer}/k{k}"
    records = rows_of(loaded.run("concept_classes", concept=concept))
    assert {(int(r["class"].rsplit("/c", 1)[1]), s["uid"]) for r in records for s in r["semantic_groups"]} == members
    assert all(r["concept"] == concept and r["layer"] == layer for r in records)
    assert [r["root_share"] for r in records] == sorted((r["root_share"] for r in records), reverse=True)
    for r in records:
        (up,) = {x["root_share"] for x in rows_of(loaded.run("trace_group_up", group=r["group"], limit=1))}
        assert r["root_share"] == pytest.approx(up)
        assert r["best_path"] <= r["root_share"] + 1e-12
    concepts = rows_of(loaded.run("concepts", model="tinyq", limit=1000))
    assert len(concepts) == loaded.atlas["concept"]
    row = next(c for c in concepts if c["concept"] == concept)
    names = {i: n for i, n in ((0, "bee"), (1, "fish"), (2, "kite"))}
    assert row["class_names"] == [names[i] for i in sorted({c for c, _ in members})]


# --------------------------------------------------------------------------- overview


def test_overview_counts_equal_the_artifacts(loaded):
    every = [g.rows for g in loaded.rows.values()]

    def total(name):
        return sum(len(r.get(name, [])) for r in every)

    def distinct(name, key="uid"):
        return len({x[key] for r in every for x in r.get(name, [])})

    expected_nodes = {
        "Model": distinct("model"), "Layer": distinct("layer"), "Neuron": distinct("neuron"), "Class": total("class"),
        "SemanticGroup": total("semantic_group"), "NeuronGroup": total("neuron_group"), "Patch": total("patch"),
        "Run": distinct("run"), "Concept": loaded.atlas["concept"], "Image": 0,
    }
    expected_rels = {
        "HAS_LAYER": distinct("layer"), "FEEDS": len({(x["lower"], x["upper"]) for r in every for x in r["layer_feeds"]}),
        "IN_LAYER": distinct("neuron"), "OF_MODEL": total("class"), "LOGIT": total("class_logit"), "ROOT": total("class_root"),
        "HAS_GROUP": total("class_group"), "HAS_SEMANTIC_GROUP": total("semantic_group"), "CONTRIBUTES": total("contributes"),
        "MEMBER_OF": total("member_of"), "FLOWS_TO": total("flows_to"), "EXEMPLAR": total("sg_exemplar") + total("group_exemplar"),
        "BUILT_BY": total("run"), "HAS_CONCEPT": loaded.atlas["concept"], "EXPRESSES": loaded.atlas["expresses"],
        "SIMILAR_TO": loaded.atlas["similar_to"], "DROPS": 0,
    }
    records = rows_of(loaded.run("overview"))
    got = defaultdict(dict)
    for r in records:
        got[r["section"]][r["name"]] = r
    assert [r["section"] for r in records] == sorted((r["section"] for r in records), key=["node", "relationship", "model", "runs"].index)
    assert {k: v["count"] for k, v in got["node"].items()} == expected_nodes
    assert {k: v["count"] for k, v in got["relationship"].items()} == expected_rels
    (model,) = got["model"].values()
    assert model["name"] == loaded.model and model["count"] == 3
    assert model["detail"]["complete"] == 3 and model["detail"]["incomplete"] == 0
    assert model["detail"]["debugged"] == 3 and model["detail"]["evaluated"] == 2 and model["detail"]["unfaithful"] == 1
    assert model["detail"]["concepts"] == loaded.atlas["concept"] and model["detail"]["model_name"] == "tinyq"
    (runs,) = got["runs"].values()
    assert runs["count"] == 3 and runs["detail"]["first_started"] == "2025-01-01T00:00:00Z"
    assert runs["detail"]["seconds"] == pytest.approx(60.0 + 61.0 + 62.0)


# --------------------------------------------------------------------------- debug / evaluate


def test_biased_groups_returns_the_spurious_groups_most_specific_first(loaded):
    records = rows_of(loaded.run("biased_groups"))
    spurious = sorted((uid for uid, p in loaded.planted.items() if p["verdict"] == "spurious"), key=lambda u: -loaded.planted[u]["bias_score"])
    assert len(spurious) == 2 and [r["group"] for r in records] == spurious
    assert records[0]["group"] == loaded.biased_top and records[0]["rank"] == 1
    top = records[0]
    planted = loaded.planted[loaded.biased_top]
    for key in ("bias_score", "bias_rank", "biased", "verdict", "q_value", "confusers", "collateral_tp", "fp_metric", "tp_metric", "mask_fp_flip",
                "random_fp_flip", "mask_tp_flip", "mask_tp_drop", "effect_z", "shared_classes"):
        assert top[key] == planted[key], key
    assert top["p_value"] == planted["effect_p"]
    assert top["class"] == loaded.class_uid(1) and top["class_name"] == "fish"
    assert all(name in ("bee", "kite") for name in top["similar_classes"])
    # the threshold filters by score among the spurious groups only: kite's group causes false
    # positives with a higher score than bee's, but is part of its class
    assert [r["group"] for r in rows_of(loaded.run("biased_groups", threshold=0.0))] == spurious
    assert [r["group"] for r in rows_of(loaded.run("biased_groups", threshold=0.5))] == [loaded.biased_top]
    only_bee = rows_of(loaded.run("biased_groups", threshold=0.0, classes=["bee", "2"]))
    assert {r["class_name"] for r in only_bee} == {"bee"}
    assert loaded.run("biased_groups", model="other-model") == []
    assert len(loaded.run("biased_groups", threshold=0.0, limit=1)) == 1


def test_fp_causes_lists_every_significant_group_with_its_verdict(loaded):
    causes = sorted((uid for uid, p in loaded.planted.items() if p["causes_fp"]), key=lambda u: -loaded.planted[u]["bias_score"])
    records = rows_of(loaded.run("fp_causes"))
    assert len(causes) == 3 and [r["group"] for r in records] == causes
    for r in records:
        planted = loaded.planted[r["group"]]
        assert (r["verdict"], r["spurious"], r["confusers"], r["q_value"]) == (planted["verdict"], planted["spurious"], planted["confusers"], planted["q_value"])
    assert [r["rank"] for r in records] == [1, 2, 3]
    assert [r["group"] for r in rows_of(loaded.run("fp_causes", spurious=False))] == [u for u in causes if not loaded.planted[u]["spurious"]]
    assert {r["class_name"] for r in rows_of(loaded.run("fp_causes", spurious=True))} == {"fish", "bee"}
    kite = rows_of(loaded.run("fp_causes", **{"class": "kite"}))
    assert [r["confusers"] for r in kite] == [["bee 9/11"]] and kite[0]["verdict"] == "causes false positives; part of the class"
    assert loaded.run("fp_causes", model="other-model") == []


def test_unfaithful_classes(loaded):
    records = rows_of(loaded.run("unfaithful_classes"))
    assert [r["class_name"] for r in records] == ["kite"]
    kite = records[0]
    assert kite["faithful"] is False and kite["fidelity_gap"] == pytest.approx(0.55 - 0.6)
    assert kite["optimality_diff"] == pytest.approx(-0.02)
    with_unknown = rows_of(loaded.run("unfaithful_classes", include_unevaluated=True))
    assert [r["class_name"] for r in with_unknown] == ["kite", "fish"]
    assert with_unknown[1]["faithful"] is None


def test_classes(loaded):
    records = rows_of(loaded.run("classes", model="tinyq"))
    assert [(r["class_index"], r["class_name"]) for r in records] == [(0, "bee"), (1, "fish"), (2, "kite")]
    for r in records:
        circuit = loaded.art.circuits[r["class_index"]]
        assert r["complete"] is True and r["layers"] == list(circuit.layers)
        assert (r["n_groups"], r["n_semantic_groups"]) == (len(circuit.groups), len(circuit.semantic_groups))
    assert [r["biased_groups"] for r in records] == [1, 1, 0]
    assert [r["faithful"] for r in records] == [True, None, False]


def test_per_class_queries_skip_an_incomplete_class(loaded):
    """A class being reloaded (complete = false) is invisible to the per-class queries, and
    `classes` still lists it, so a half-loaded circuit is never read as if it were whole."""
    driver, db = loaded.conn.driver, loaded.conn.database
    uid = f"{loaded.model}/c0"
    group = rows_of(loaded.run("trace_class", **{"class": "bee", "limit": 1}))[0]["groups"][-1]
    driver.execute_query("MATCH (c:Class {uid: $c}) SET c.complete = false", c=uid, database_=db)
    try:
        assert rows_of(loaded.run("trace_class", **{"class": "bee"})) == []
        assert rows_of(loaded.run("class_circuit", **{"class": "bee"})) == []
        assert rows_of(loaded.run("group_detail", group=group)) == []
        assert rows_of(loaded.run("trace_group_up", group=group)) == []
        assert rows_of(loaded.run("compare_classes", class_a="bee", class_b="fish")) == []
        assert uid not in [r["class"] for r in rows_of(loaded.run("similar_classes", **{"class": "fish"}))]
        assert [r["complete"] for r in rows_of(loaded.run("classes", model="tinyq"))] == [False, True, True]
    finally:
        driver.execute_query("MATCH (c:Class {uid: $c}) SET c.complete = true", c=uid, database_=db)
    assert len(rows_of(loaded.run("trace_class", **{"class": "bee"}))) > 0


# --------------------------------------------------------------------------- run_query errors


def test_run_query_rejects_bad_parameters_before_sending(loaded):
    with pytest.raises(ParameterError) as err:
        loaded.run("trace_class", limit=3)
    assert "missing required parameter 'class'" in str(err.value)
    assert "'trace_class' expects:" in str(err.value) and "limit: int = 10" in str(err.value)
    with pytest.raises(ParameterError, match="parameter 'limit': expected an integer"):
        loaded.run("trace_class", **{"class": "bee", "limit": "5"})
    with pytest.raises(ParameterError, match="did you mean 'class'"):
        loaded.run("trace_class", clas="bee")
    with pytest.raises(UnknownQueryError, match="trace_class"):
        loaded.run("trace_clas")


# --------------------------------------------------------------------------- registry (no database)


@pytest.mark.parametrize("name", sorted(load_queries()))
def test_header_is_complete(name):
    q = get_query(name)
    assert q.description and q.about and q.columns
    assert q.text.startswith(f"// {name}: ")
    for p in q.params:
        assert p.description
        assert p.example is not None or not p.required
        bind_params(q, {p.name: p.example} | {o.name: o.example for o in q.params if o.required})
    assert len(set(q.column_names)) == len(q.column_names)


def test_parse_literal():
    assert parse_literal("null") is None and parse_literal("TRUE") is True and parse_literal(" false ") is False
    assert parse_literal("10") == 10 and parse_literal("-2.5") == -2.5 and parse_literal("1e3") == 1000.0
    assert parse_literal("'bee'") == "bee" and parse_literal('"it\\\'s"') == "it's"
    assert parse_literal("[1, 'a', [true]]") == [1, "a", [True]] and parse_literal("[]") == []
    for bad in ("bee", "[1, 2", "'open", "1 2", ""):
        with pytest.raises(ValueError):
            parse_literal(bad)


def test_parse_param_value_types():
    def p(type_):
        return Param("x", type_, "", True)

    assert parse_param_value(p("int"), "5") == 5
    assert parse_param_value(p("float"), "0.5") == 0.5
    assert parse_param_value(p("bool"), "yes") is True and parse_param_value(p("bool"), "False") is False
    assert parse_param_value(p("string"), "bee") == "bee" and parse_param_value(p("string"), "'a b'") == "a b"
    assert parse_param_value(p("string"), "null") is None
    assert parse_param_value(p("list<int>"), "[1, 2]") == [1, 2]
    assert parse_param_value(p("list<int>"), "1,2,3") == [1, 2, 3]
    assert parse_param_value(p("list<string>"), '["a", "b"]') == ["a", "b"]
    assert parse_param_value(p("list<string>"), "['a', 3]") == ["a", "3"]
    assert parse_param_value(p("list<string>"), "bee,fish") == ["bee", "fish"]
    assert parse_param_value(p("list<float>"), "[1, 0.5]") == [1, 0.5]
    for type_, raw in (("int", "1.5"), ("int", "x"), ("float", "x"), ("bool", "maybe"), ("list<int>", "1,x"), ("list<int>", "[1,")):
        with pytest.raises(ParameterError):
            parse_param_value(p(type_), raw)


def test_parse_cli_params_and_bind():
    q = get_query("biased_groups")
    assert parse_cli_params(q, ["threshold=0.2", "classes=bee,3", "limit=5"]) == {"threshold": 0.2, "model": None, "classes": ["bee", "3"], "limit": 5}
    assert parse_cli_params(q, ["$limit=7"])["limit"] == 7
    with pytest.raises(ParameterError, match="key=value"):
        parse_cli_params(q, ["limit"])
    with pytest.raises(ParameterError, match="given twice"):
        parse_cli_params(q, ["limit=1", "limit=2"])
    with pytest.raises(ParameterError, match="is not an int"):
        parse_cli_params(q, ["limit=many"])
    t = get_query("trace_class")
    assert bind_params(t, {"class": 3})["class"] == "3"  # an index given as a number
    assert bind_params(t, {"class": "bee", "limit": 2.0})["limit"] == 2
    with pytest.raises(ParameterError, match="cannot be null"):
        bind_params(t, {"class": None})
    with pytest.raises(ParameterError, match="expected a string"):
        bind_params(t, {"class": ["bee"]})


GOOD = """// demo: a demo query
//
// What it answers.
//
// Parameters:
//   $x int: an integer
//   :param x => 1
//   $y string = 'a': a string
//     continued here
//   :param y => 'b'
//
// Columns:
//   n int: the answer
RETURN $x + size($y) AS n
"""


def test_parse_query_accepts_the_format():
    q = parse_query(GOOD, "demo.cypher")
    assert q.name == "demo" and q.description == "a demo query" and q.about == "What it answers."
    assert [(p.name, p.type, p.required, p.default, p.example) for p in q.params] == [("x", "int", True, None, 1), ("y", "string", False, "a", "b")]
    assert q.params[1].description == "a string continued here"
    assert q.column_names == ("n",)


@pytest.mark.parametrize(
    "broken, message",
    [
        (GOOD.replace("// demo: a demo query", "// other: a demo query"), "names 'other'"),
        (GOOD.replace("//   :param x => 1\n", ""), "exactly one ':param' line"),
        (GOOD.replace("$x int:", "$x integer:"), "unknown type 'integer'"),
        (GOOD.replace("$x + size($y)", "$x + size($z)"), "differ from those the query uses"),
        (GOOD.replace("//   n int: the answer\n", ""), "no 'Columns:' section"),
        (GOOD.replace("= 'a'", "= true"), "default expected a string"),
        (GOOD.replace(":param x => 1", ":param x => 'one'"), "expected an integer"),
        ("RETURN 1 AS n\n", "no '//' header"),
    ],
)
def test_parse_query_rejects_malformed_headers(broken, message):
    with pytest.raises(QueryFileError, match=message):
        parse_query(broken, "demo.cypher")


# --------------------------------------------------------------------------- the Browser style sheet


def parse_grass(text: str) -> dict[str, dict[str, str]]:
    """Neo4j Browser's GraSS parser (GraphStyleModel.parse in neo4j-browser), ported as is.

    Single quotes toggle a string; braces outside strings open/close a rule; a declaration
    is split at ';' and then at ':' (so only the text before a second ':' survives).
    """
    rules: dict[str, str] = {}
    inside_string = inside_props = False
    keyword = props = ""
    for c in text:
        skip = True
        if c == "{" and not inside_string:
            inside_props = True
        elif c == "}" and not inside_string:
            inside_props = False
            rules[keyword] = props
            keyword = props = ""
        elif c == "'":
            inside_string = not inside_string
        else:
            skip = False
        if skip:
            continue
        if inside_props:
            props += c
        elif not c.isspace():
            keyword += c
    out: dict[str, dict[str, str]] = {}
    for key, body in rules.items():
        out[key] = {}
        for decl in body.split(";"):
            parts = decl.split(":")
            if len(parts) >= 2 and parts[0].strip() and parts[1].strip():
                out[key][parts[0].strip()] = parts[1].strip()
    return out


def test_grass_stylesheet_styles_every_label_with_existing_properties(loaded):
    import re
    from importlib import resources

    text = (resources.files("neurflow.queries") / "neurflow.grass").read_text(encoding="utf-8")
    sheet = parse_grass(text)
    labels = ("Model", "Layer", "Neuron", "Class", "SemanticGroup", "NeuronGroup", "Patch", "Run", "Concept", "Image")
    assert {"node", "relationship"} <= set(sheet)
    for label in labels:
        rule = sheet[f"node.{label}"]
        assert {"color", "caption", "diameter"} <= set(rule), label
        assert re.fullmatch(r"#[0-9A-Fa-f]{6}", rule["color"])
    colours = [sheet[f"node.{label}"]["color"].upper() for label in labels]
    assert len(set(colours)) == len(colours), "one colour per label"
    for key, rule in sheet.items():
        for prop in ("shaft-width", "diameter"):
            if prop in rule:
                assert re.fullmatch(r"\d+px", rule[prop]), (key, prop)
        # a ':' inside a caption would be cut off by the Browser's parser: the raw text must match
        if "caption" in rule:
            assert f"caption: '{rule['caption']}'" in text, key
    assert sheet["relationship.FLOWS_TO"]["caption"] == "{share}"
    widths = {k.split(".", 1)[1]: int(v["shaft-width"][:-2]) for k, v in sheet.items() if k.startswith("relationship.")}
    assert widths["FLOWS_TO"] == max(widths.values())
    # every {property} a caption names exists on the loaded nodes/relationships
    driver, db = loaded.conn.driver, loaded.conn.database
    for key, rule in sheet.items():
        kind, _, name = key.partition(".")
        props = re.findall(r"\{([^{}]*)\}", rule.get("caption", ""))
        if not name or not props:
            continue
        pattern = f"MATCH (x:{name})" if kind == "node" else f"MATCH ()-[x:{name}]->()"
        records, _, _ = driver.execute_query(f"{pattern} RETURN properties(x) AS p LIMIT 1", database_=db)
        if not records:
            assert name in ("Image", "DROPS"), f"no {name} in the test graph"
            continue
        for prop in props:
            assert prop in records[0]["p"], (key, prop)
