"""Pure row builders and the writer's statements, without a database."""

from __future__ import annotations

import re
from pathlib import Path
from unittest.mock import MagicMock

import neo4j
import pytest

from neurflow import load_circuit
from neurflow.ingest.graph_rows import circuit_rows, class_uid, model_uid
from neurflow.ingest.graph_writer import CLASS_CLEANUP, SCHEMA, WRITES, batched, write_class
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
    for name, query in WRITES.items():
        assert query.startswith("UNWIND $rows AS r"), name
        # no quoted literal values formatted into the text
        assert not re.search(r"'[^']*'", query), name
    for q in CLASS_CLEANUP:
        assert "$cls" in q or "Run" in q
    assert all("IF NOT EXISTS" in s for s in SCHEMA)


def test_batched_splits_rows() -> None:
    assert [len(b) for b in batched(list(range(5)), 2)] == [2, 2, 1]
    with pytest.raises(ValueError):
        list(batched([1], 0))


def test_write_class_sends_exact_statements(circuit) -> None:
    driver = MagicMock(spec=neo4j.Driver)
    rows = circuit_rows(circuit)
    stats = write_class(driver, "neurflow", rows, batch_size=1000)
    calls = driver.execute_query.call_args_list
    texts = [c.args[0] for c in calls]
    # model/layer/neuron/class first, then the cleanup of the class, then the rest, then complete
    assert texts[0] == WRITES["model"]
    assert texts.index(CLASS_CLEANUP[1]) > texts.index(WRITES["class"])
    assert texts.index(WRITES["contributes"]) > texts.index(CLASS_CLEANUP[-1])
    assert "complete = true" in texts[-1]
    for c in calls:
        assert c.kwargs["database_"] == "neurflow"
    sent = sum(len(c.kwargs["parameters_"]["rows"]) for c in calls if c.args[0] == WRITES["contributes"])
    assert sent == rows.count("contributes") == stats.rows["contributes"]
