"""Queries return the labels of `neurflow label` (issue #14) next to the uids.

The `loaded` graph (tests/queries/conftest.py) is labelled by the annotations labeller from
synthetic label maps; expected answers come from the label stores beside the artifacts
(`read_class_labels`), never from the database.
"""

from __future__ import annotations

import pytest

from neurflow.ingest.errors import NeurflowError

from .conftest import CLASSES


def _gid(loaded, index: int, layer: str, group: int) -> str:
    return f"{loaded.class_uid(index)}/{layer}/g{group}"


def _by_uid(loaded) -> dict:
    """group uid -> GroupLabel, over every class."""
    return {_gid(loaded, i, layer, g): lab for i, stored in loaded.labels.items() for (layer, g), lab in stored.groups.items()}


def _relations(loaded) -> dict:
    return {
        (_gid(loaded, i, cl, ci), _gid(loaded, i, pl, pi)): r.relation
        for i, stored in loaded.labels.items()
        for (cl, ci, pl, pi), r in stored.relations.items()
    }


def test_every_group_and_edge_is_labelled(loaded):
    for index, _ in CLASSES:
        circuit = loaded.art.circuits[index]
        stored = loaded.labels[index]
        assert set(stored.groups) == {(g.layer, g.index) for g in circuit.groups}
        assert set(stored.relations) == {(e.child_layer, e.child_index, e.parent_layer, e.parent_index) for e in circuit.group_edges}
        assert all(lab.source == "annotations" and lab.label for lab in stored.groups.values())
    labels = {lab.label for stored in loaded.labels.values() for lab in stored.groups.values()}
    assert len(labels) >= 2, labels  # the synthetic annotations are not one concept everywhere


def test_trace_class_returns_labels_and_relations(loaded):
    labels, relations = _by_uid(loaded), _relations(loaded)
    for _, name in CLASSES:
        rows = loaded.run("trace_class", **{"class": name, "limit": 5})
        assert rows
        for r in rows:
            assert r["labels"] == [labels[g].label for g in r["groups"]]
            assert r["relations"] == [relations[(a, b)] for a, b in zip(r["groups"][:-1], r["groups"][1:])]
            assert all(isinstance(t, str) and "of the attribution" in t for t in r["relations"])


def test_trace_group_up_and_group_detail_return_labels(loaded):
    labels, relations = _by_uid(loaded), _relations(loaded)
    for uid, lab in labels.items():
        (detail,) = loaded.run("group_detail", group=uid)
        assert (detail["label"], detail["description"], detail["label_source"]) == (lab.label, lab.description, lab.source)
        assert detail["label_score"] == pytest.approx(lab.score)
        assert detail["part_of_class"] == lab.part_of_class and detail["labelled_at"] == lab.labelled_at
        for e in detail["incoming"]:
            assert e["label"] == labels[e["group"]].label and e["relation"] == relations[(e["group"], uid)]
        for e in detail["outgoing"]:
            assert e["label"] == labels[e["group"]].label and e["relation"] == relations[(uid, e["group"])]
        for s in detail["similar"]:
            assert s["label"] == labels[s["group"]].label
        up = loaded.run("trace_group_up", group=uid, limit=3)
        assert up and all(r["label"] == lab.label and r["labels"][0] == lab.label for r in up)
        assert all(r["labels"] == [labels[g].label for g in r["groups"]] for r in up)


def test_compare_and_concept_classes_return_labels(loaded):
    labels = _by_uid(loaded)
    pairs = 0
    for r in loaded.run("compare_classes", class_a="bee", class_b="fish"):
        for p in r["similar_groups"]:
            assert (p["label_a"], p["label_b"]) == (labels[p["group_a"]].label, labels[p["group_b"]].label)
            pairs += 1
    assert pairs > 0
    concept = loaded.run("concepts", limit=1)[0]["concept"]
    rows = loaded.run("concept_classes", concept=concept)
    assert rows and all(r["group_label"] == labels[r["group"]].label for r in rows)
    stored = _concept_labels(loaded)
    assert rows[0]["concept_label"] == stored[concept].label


def _concept_labels(loaded) -> dict:
    from neurflow.ingest.labelling.concepts import read_concept_labels

    return read_concept_labels([loaded.art.dirs[i] for i, _ in CLASSES])


def test_concepts_are_labelled_and_found(loaded):
    stored = _concept_labels(loaded)
    records, _, _ = loaded.conn.driver.execute_query(
        "MATCH (k:Concept) RETURN k.uid AS uid, k.label AS label, k.caption AS caption, k.classes AS classes", database_=loaded.conn.database
    )
    assert records and {r["uid"]: r["label"] for r in records} == {uid: lab.label for uid, lab in stored.items()}
    assert all(r["caption"] == r["label"] for r in records)
    names = dict(CLASSES)
    rows = [r for r in loaded.run("find_concept", text="flowers", limit=1000) if r["kind"] == "concept"]
    expected = {uid for uid, lab in stored.items() if "flowers" in lab.label or "flowers" in lab.description}
    assert {r["uid"] for r in rows} == expected and expected
    classes_of = {r["uid"]: r["classes"] for r in records}
    for r in rows:
        assert r["class"] is None and r["classes"] == [names[i] for i in sorted(classes_of[r["uid"]])]


def test_find_concept_finds_labelled_groups_across_classes(loaded):
    labels = _by_uid(loaded)
    rows = loaded.run("find_concept", text="Flowers", limit=1000)
    groups = {r["uid"]: r for r in rows if r["kind"] == "group"}
    expected = {uid for uid, lab in labels.items() if "flowers" in lab.label.lower() or "flowers" in lab.description.lower()}
    assert set(groups) == expected and expected
    for uid, r in groups.items():
        lab = labels[uid]
        assert r["label"] == lab.label and r["score"] == (1.0 if "flowers" in lab.label else 0.5)
        assert r["class"] == uid.rsplit("/", 2)[0] and r["classes"] == [r["class_name"]]
    assert len({r["class"] for r in groups.values()}) == len(CLASSES)  # across classes
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    # two words: a group scores the mean over them; nothing matches a word no label has
    both = [r for r in loaded.run("find_concept", text="flowers zebra", limit=1000) if r["kind"] == "group"]
    assert {r["uid"] for r in both} == set(groups) and all(r["score"] == groups[r["uid"]]["score"] / 2 for r in both)
    assert loaded.run("find_concept", text="zebra") == []
    assert loaded.run("find_concept", text="flowers", model="no-such-model") == []


def test_find_concept_fulltext_needs_neo4j(loaded):
    """The embedded database has no full-text index: the Neo4j-only query fails there, which is
    why find_concept (portable) exists; the index statement is refused there too."""
    from neurflow.ingest.labelling.service import ensure_label_index

    assert ensure_label_index(loaded.conn.driver, loaded.conn.database) is False
    with pytest.raises(NeurflowError):
        loaded.run("find_concept_fulltext", text="flowers")
