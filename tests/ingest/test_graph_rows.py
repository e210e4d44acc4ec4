"""Pure row builders and the writer's statements, without a database."""

from __future__ import annotations

import re
from pathlib import Path
from unittest.mock import MagicMock

import neo4j
import pytest

from neurflow import load_circuit
from neurflow.ingest.graph.rows import circuit_rows
from neurflow.ingest.graph.schema import LABELS, SCHEMA, class_uid, model_uid
from neurflow.ingest.graph.statements import ATLAS_WRITES, LOAD_WRITES
from neurflow.ingest.graph.writer import (
    CLASS_CLEANUP,
    CLASS_DEBUG_PROPS,
    CLASS_EVAL_PROPS,
    WRITES,
    batched,
    write_class,
)
from neurflow.ingest.pipeline import find_artifacts


@pytest.fixture(scope="module")
def circuit(artifacts: Path):
    return load_circuit(find_artifacts([artifacts])[1])


def test_rows_match_the_circuit(circuit) -> None:
    rows = circuit_rows(circuit)
    m = model_uid(circuit.model_name, circuit.model_fingerprint)
    assert rows.cls == class_uid(m, circuit.class_index) == f"{m}/c1"
    assert rows.count("neuron") == len(circuit.neurons())
    assert rows.count("semantic_group") == len(circuit.semantic_groups)
    assert rows.count("contributes") == len(circuit.edges) == sum(len(t.core) * len(circuit.semantic_groups_of(t.target)) for t in circuit.targets)
    assert rows.count("neuron_group") == len(circuit.groups)
    assert rows.count("member_of") == sum(len(g.members) for g in circuit.groups)
    assert rows.count("flows_to") == len(circuit.group_edges)
    assert rows.count("class_root") == 1  # the logit layer holds one group
    # every uid is unique within its label
    for name in ("neuron", "semantic_group", "neuron_group", "patch"):
        uids = [r["uid"] for r in rows.rows[name]]
        assert len(uids) == len(set(uids)), name
    # shares of the edges into one parent sum to 1
    into: dict[str, float] = {}
    for r in rows.rows["flows_to"]:
        into[r["parent"]] = into.get(r["parent"], 0.0) + r["share"]
    assert all(abs(v - 1.0) < 1e-9 for v in into.values())


def test_exemplar_rows_reference_patch_rows(circuit) -> None:
    rows = circuit_rows(circuit, thumbnails={0: "/x/p0.png"})
    patches = {r["uid"] for r in rows.rows["patch"]}
    assert {r["patch"] for r in rows.rows["sg_exemplar"]} <= patches
    assert {r["patch"] for r in rows.rows["group_exemplar"]} <= patches


def test_statements_take_values_only_as_parameters() -> None:
    for w in (*LOAD_WRITES, *ATLAS_WRITES):
        for query in (w.cypher(), w.cypher(fresh=True)):
            assert query.startswith("UNWIND $rows AS r"), w.name
            # no quoted literal values formatted into the text
            assert not re.search(r"'[^']*'", query), w.name
    for q in CLASS_CLEANUP:
        assert "$cls" in q or "Run" in q
    assert all("IF NOT EXISTS" in s for s in SCHEMA)
    assert {f"{label.lower()}_uid" for label in LABELS} <= {s.split()[2] for s in SCHEMA if "CONSTRAINT" in s}


def test_statement_table_covers_every_row_and_label(circuit) -> None:
    """Each statement is declared once: the rows builders fill exactly the table's names, and
    every label a statement writes has a uniqueness constraint."""
    rows = circuit_rows(circuit, run={"uid": "run-x", "started": "t"})
    assert [w.name for w in LOAD_WRITES] == list(WRITES)
    assert set(rows.rows) == set(WRITES)
    written = {w.node.label for w in (*LOAD_WRITES, *ATLAS_WRITES) if w.node}
    assert written <= set(LABELS)
    # class-owned statements CREATE into a cleaned class; shared ones always MERGE
    for w in LOAD_WRITES:
        fresh = w.cypher(fresh=True)
        if w.owner == "shared":
            assert "CREATE" not in fresh, w.name
        else:
            assert "MERGE" not in fresh, w.name


def test_cleanup_clears_debug_and_evaluation_properties() -> None:
    remove = next(q for q in CLASS_CLEANUP if "REMOVE" in q)
    for p in (*CLASS_DEBUG_PROPS, *CLASS_EVAL_PROPS):
        assert f"c.{p}," in remove + ",", p


def test_evaluation_props_cover_the_evaluation_summary() -> None:
    """Every property EvaluationSummary.properties() can produce is cleared by a reload."""
    from dataclasses import fields

    from neurflow.evaluation import EvaluationSummary

    assert {f"eval_{f.name}" for f in fields(EvaluationSummary)} <= set(CLASS_EVAL_PROPS)


def test_batched_splits_rows() -> None:
    assert [len(b) for b in batched(list(range(5)), 2)] == [2, 2, 1]
    with pytest.raises(ValueError):
        list(batched([1], 0))


def _recording_driver() -> tuple[MagicMock, list[tuple[str, dict]]]:
    """A mock driver whose sessions run transaction functions on a recording transaction."""
    sent: list[tuple[str, dict]] = []
    tx = MagicMock(spec=neo4j.ManagedTransaction)
    tx.run.side_effect = lambda query, **params: sent.append((query, params)) or MagicMock()
    driver = MagicMock(spec=neo4j.Driver)
    session = driver.session.return_value.__enter__.return_value
    session.execute_write.side_effect = lambda work, *args: work(tx, *args)
    return driver, sent


def test_write_class_sends_exact_statements_in_one_transaction(circuit) -> None:
    driver, sent = _recording_driver()
    rows = circuit_rows(circuit)
    stats = write_class(driver, "neurflow", rows, batch_size=1000)
    session = driver.session.return_value.__enter__.return_value
    assert session.execute_write.call_count == 1  # the whole class, all or nothing
    assert driver.session.call_args.kwargs["database"] == "neurflow"
    texts = [q for q, _ in sent]
    table = {w.name: w for w in LOAD_WRITES}
    # model/layer/neuron/class first, then the cleanup of the class, then the rest (CREATE), then complete
    assert texts[0] == table["model"].cypher()
    assert texts.index(CLASS_CLEANUP[1]) > texts.index(table["class"].cypher())
    assert texts.index(table["contributes"].cypher(fresh=True)) > texts.index(CLASS_CLEANUP[-1])
    assert "complete = true" in texts[-1]
    got = sum(len(p["rows"]) for q, p in sent if q == table["contributes"].cypher(fresh=True))
    assert got == rows.count("contributes") == stats.rows["contributes"]
    assert stats.relationships == sum(len(w.rels) * rows.count(w.name) for w in LOAD_WRITES)


def test_write_class_per_batch_mode_merges(circuit) -> None:
    driver = MagicMock(spec=neo4j.Driver)
    rows = circuit_rows(circuit)
    write_class(driver, "neurflow", rows, batch_size=7, atomic=False)
    calls = driver.execute_query.call_args_list
    texts = [c.args[0] for c in calls]
    assert all(c.kwargs["database_"] == "neurflow" for c in calls)
    assert not any(t.startswith("UNWIND") and "CREATE" in t for t in texts)
    sent = [c.kwargs["parameters_"]["rows"] for c in calls if c.args[0] == WRITES["contributes"]]
    assert max(len(b) for b in sent) <= 7 and sum(len(b) for b in sent) == rows.count("contributes")


def test_driver_errors_become_project_errors() -> None:
    from neurflow.errors import AuthenticationFailed, DatabaseError, DatabaseUnavailable
    from neurflow.ingest.graph.errors import translating_errors

    with pytest.raises(DatabaseUnavailable, match="became unreachable while writing x \\(ServiceUnavailable\\); left as it was"):
        with translating_errors("writing x", unavailable_note="; left as it was"):
            raise neo4j.exceptions.ServiceUnavailable("gone")
    with pytest.raises(AuthenticationFailed):
        with translating_errors("writing x"):
            raise neo4j.exceptions.AuthError("no")
    err = neo4j.exceptions.ClientError._hydrate_neo4j(code="Neo.ClientError.Statement.SyntaxError", message="bad syntax")
    with pytest.raises(DatabaseError, match=r"writing x failed \(Neo.ClientError.Statement.SyntaxError\): bad syntax"):
        with translating_errors("writing x"):
            raise err
    with pytest.raises(DatabaseUnavailable, match="cannot reach the graph database at bolt://h:1 .*; start it"):
        with translating_errors("connecting", server="bolt://h:1", hint="start it"):
            raise neo4j.exceptions.ServiceUnavailable("Couldn't connect (reason [Errno 111] refused)")
