"""Loading artifacts into the embedded graph database: counts, idempotence, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurflow import load_circuit
from neurflow.ingest.graph.rows import circuit_rows
from neurflow.ingest.graph.writer import (
    CLASS_DEBUG_PROPS,
    CLASS_EVAL_PROPS,
    write_class,
    write_evaluation_summary,
)
from neurflow.ingest.pipeline import find_artifacts, load, read_artifact

LABELS = ("Model", "Layer", "Neuron", "Class", "SemanticGroup", "NeuronGroup", "Patch", "Run")
RELS = ("HAS_LAYER", "FEEDS", "IN_LAYER", "OF_MODEL", "LOGIT", "HAS_SEMANTIC_GROUP", "CONTRIBUTES", "MEMBER_OF", "FLOWS_TO", "EXEMPLAR", "ROOT", "HAS_GROUP", "BUILT_BY")


def graph_counts(conn) -> dict[str, int]:
    out = {}
    for label in LABELS:
        records, _, _ = conn.driver.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n", database_=conn.database)
        out[label] = records[0]["n"]
    for rel in RELS:
        records, _, _ = conn.driver.execute_query(f"MATCH ()-[r:{rel}]->() RETURN count(r) AS n", database_=conn.database)
        out[rel] = records[0]["n"]
    return out


def expected_counts(directories) -> dict[str, int]:
    """What the artifacts say the graph must hold (shared nodes counted once)."""
    sets: dict[str, set] = {k: set() for k in (*LABELS, *RELS)}
    for d in directories:
        circuit, run, thumbs = read_artifact(d)
        r = circuit_rows(circuit, run=run, thumbnails=thumbs).rows
        sets["Model"] |= {x["uid"] for x in r["model"]}
        sets["Layer"] |= {x["uid"] for x in r["layer"]}
        sets["HAS_LAYER"] |= {x["uid"] for x in r["layer"]}
        sets["FEEDS"] |= {(x["lower"], x["upper"]) for x in r["layer_feeds"]}
        sets["Neuron"] |= {x["uid"] for x in r["neuron"]}
        sets["IN_LAYER"] |= {x["uid"] for x in r["neuron"]}
        sets["Class"] |= {x["uid"] for x in r["class"]}
        sets["OF_MODEL"] |= {x["uid"] for x in r["class"]}
        sets["LOGIT"] |= {(x["cls"], x["neuron"]) for x in r["class_logit"]}
        sets["SemanticGroup"] |= {x["uid"] for x in r["semantic_group"]}
        sets["HAS_SEMANTIC_GROUP"] |= {x["uid"] for x in r["semantic_group"]}
        sets["CONTRIBUTES"] |= {(x["child"], x["sg"]) for x in r["contributes"]}
        sets["NeuronGroup"] |= {x["uid"] for x in r["neuron_group"]}
        sets["MEMBER_OF"] |= {(x["sg"], x["group"]) for x in r["member_of"]}
        sets["FLOWS_TO"] |= {(x["child"], x["parent"]) for x in r["flows_to"]}
        sets["Patch"] |= {x["uid"] for x in r["patch"]}
        sets["EXEMPLAR"] |= {(x["sg"], x["patch"]) for x in r["sg_exemplar"]} | {(x["group"], x["patch"]) for x in r["group_exemplar"]}
        sets["ROOT"] |= {(x["cls"], x["group"]) for x in r["class_root"]}
        sets["HAS_GROUP"] |= {(x["cls"], x["group"]) for x in r["class_group"]}
        sets["Run"] |= {x["uid"] for x in r.get("run", [])}
        sets["BUILT_BY"] |= {(x["cls"], x["uid"]) for x in r.get("run", [])}
    return {k: len(v) for k, v in sets.items()}


def test_counts_equal_artifacts_and_reload_changes_nothing(graph, artifacts: Path) -> None:
    dirs = find_artifacts([artifacts])
    outcomes = load(graph.driver, graph.database, dirs, log=lambda _: None)
    assert [o.status for o in outcomes] == ["loaded"] * 3
    first = graph_counts(graph)
    assert first == expected_counts(dirs)
    assert first["CONTRIBUTES"] > 0 and first["FLOWS_TO"] > 0
    load(graph.driver, graph.database, dirs, log=lambda _: None)
    assert graph_counts(graph) == first
    records, _, _ = graph.driver.execute_query("MATCH (c:Class) RETURN collect(c.complete) AS c", database_=graph.database)
    assert records[0]["c"] == [True, True, True]


def test_edge_weights_survive_the_round_trip(graph, artifacts: Path) -> None:
    d = find_artifacts([artifacts])[0]
    load(graph.driver, graph.database, [d], log=lambda _: None)
    circuit = load_circuit(d)
    records, _, _ = graph.driver.execute_query(
        "MATCH (n:Neuron)-[e:CONTRIBUTES]->(s:SemanticGroup) RETURN n.layer AS layer, n.channel AS ch, s.channel AS parent, s.index AS j, e.weight AS w",
        database_=graph.database,
    )
    got = {(r["layer"], r["ch"], r["parent"], r["j"]): r["w"] for r in records}
    want = {(e.child.layer, e.child.channel, e.parent.channel, e.group): e.weight for e in circuit.edges}
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) < 1e-12


def test_reloading_a_recomputed_class_drops_its_evaluation_and_debug_results(graph, artifacts: Path) -> None:
    """eval_* and debug results describe the circuit that was: a reload of a recomputed class
    (a new run) must not keep them, on the Class node, its groups or its Run."""
    d = find_artifacts([artifacts])[0]
    load(graph.driver, graph.database, [d], log=lambda _: None)
    circuit, _, thumbs = read_artifact(d)
    rows = circuit_rows(circuit, run={"uid": "run-first", "started": "2025-01-01T00:00:00Z"}, thumbnails=thumbs)
    write_class(graph.driver, graph.database, rows)
    cls = rows.cls
    summary = {"eval_faithful": True, "eval_optimality_diff": 0.25, "evaluated_at": "2025-01-02T00:00:00Z", "eval_experiments": ["optimality"],
               "eval_seed": 0, "eval_dir": "/tmp/eval"}
    assert write_evaluation_summary(graph.driver, graph.database, cls, summary) is True
    assert write_evaluation_summary(graph.driver, graph.database, "nope/c9", summary) is False
    with pytest.raises(ValueError, match="bias_score"):
        write_evaluation_summary(graph.driver, graph.database, cls, {"bias_score": 1.0})
    graph.driver.execute_query(
        "MATCH (c:Class {uid: $cls}) SET c += $debug WITH c MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup) SET g.biased = true, g.bias_score = 0.5",
        parameters_={"cls": cls, "debug": {p: "x" for p in CLASS_DEBUG_PROPS}}, database_=graph.database,
    )
    state = "MATCH (c:Class {uid: $cls}) OPTIONAL MATCH (c)-[:BUILT_BY]->(r:Run) RETURN properties(c) AS c, collect(properties(r)) AS runs, " \
            "COUNT { (c)-[:HAS_GROUP]->(g:NeuronGroup) WHERE g.biased IS NOT NULL OR g.bias_score IS NOT NULL } AS debugged"
    before, _, _ = graph.driver.execute_query(state, cls=cls, database_=graph.database)
    assert set(CLASS_DEBUG_PROPS) | set(summary) <= set(before[0]["c"])  # really set, so the check below can fail
    assert before[0]["runs"][0]["eval_faithful"] is True and before[0]["debugged"] > 0

    recomputed = circuit_rows(circuit, run={"uid": "run-second", "started": "2025-02-01T00:00:00Z"}, thumbnails=thumbs)
    write_class(graph.driver, graph.database, recomputed)
    after, _, _ = graph.driver.execute_query(state, cls=cls, database_=graph.database)
    props = after[0]["c"]
    stale = sorted(p for p in props if p.startswith(("eval_", "debug")) or p in CLASS_DEBUG_PROPS or p in CLASS_EVAL_PROPS)
    assert stale == []
    assert props["complete"] is True and props["name"] == circuit.class_name
    assert [r["uid"] for r in after[0]["runs"]] == ["run-second"] and "eval_faithful" not in after[0]["runs"][0]
    assert after[0]["debugged"] == 0
    records, _, _ = graph.driver.execute_query("MATCH (r:Run {uid: 'run-first'}) RETURN count(r) AS n", database_=graph.database)
    assert records[0]["n"] == 0


@pytest.mark.parametrize(("workers", "per_transaction"), [(2, 1), (1, 2)])
def test_write_classes_gives_the_same_graph(graph, artifacts: Path, workers: int, per_transaction: int) -> None:
    """Shared nodes MERGEd once up front, then the classes two at a time (threads), or two per
    transaction: the same counts as `load`, also when loaded again."""
    from neurflow.ingest.graph.writer import write_classes

    dirs = find_artifacts([artifacts])
    rows = []
    for d in dirs:
        circuit, run, thumbs = read_artifact(d)
        rows.append(circuit_rows(circuit, run=run, thumbnails=thumbs))
    for _ in range(2):
        stats = write_classes(graph.driver, graph.database, rows, workers=workers, classes_per_transaction=per_transaction)
        assert [s.rows["contributes"] for s in stats] == [r.count("contributes") for r in rows]
        assert graph_counts(graph) == expected_counts(dirs)
    records, _, _ = graph.driver.execute_query("MATCH (c:Class) RETURN collect(c.complete) AS c", database_=graph.database)
    assert records[0]["c"] == [True] * len(rows)
    with pytest.raises(ValueError, match="twice"):
        write_classes(graph.driver, graph.database, [rows[0], rows[0]], classes_per_transaction=2)


def _cli_env(graph) -> dict[str, str]:
    from neurflow.ingest import embedded_db

    env = dict(os.environ)
    env.update(NEURFLOW_URI=graph.uri, NEURFLOW_USER=graph.user, NEURFLOW_PASSWORD=embedded_db.password(), NEURFLOW_DATABASE=graph.database)
    return env


def test_killed_load_then_rerun_gives_the_same_graph(graph, artifacts: Path) -> None:
    """A real SIGKILL in the middle of loading, then a re-run: same graph as uninterrupted."""
    dirs = find_artifacts([artifacts])
    load(graph.driver, graph.database, dirs, log=lambda _: None)
    reference = graph_counts(graph)
    graph.driver.execute_query("MATCH (n) DETACH DELETE n", database_=graph.database)

    cmd = [sys.executable, "-c", "import sys; from neurflow.ingest.cli import main; sys.exit(main())", "load", *map(str, dirs), "--batch-size", "5", "--no-link", "--quiet"]
    proc = subprocess.Popen(cmd, env=_cli_env(graph), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        records, _, _ = graph.driver.execute_query("MATCH ()-[e:CONTRIBUTES]->() RETURN count(e) AS n", database_=graph.database)
        if records[0]["n"] > 0:
            proc.send_signal(signal.SIGKILL)
            killed_at = records[0]["n"]
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None, "the load finished before it could be killed"
    partial = graph_counts(graph)
    assert partial != reference  # really interrupted
    rerun = subprocess.run(cmd, env=_cli_env(graph), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert graph_counts(graph) == reference


def test_unreachable_database_keeps_artifacts(tmp_path: Path, image_folder: Path) -> None:
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    from .conftest import COMPUTE_ARGS

    out = tmp_path / "arts"
    result = CliRunner().invoke(
        main,
        ["ingest", "--data", str(image_folder), "--out", str(out), "--classes", "beta", "--uri", "bolt://127.0.0.1:1",
         "--user", "neo4j", "--password", "s3cret-value", *COMPUTE_ARGS],
    )
    assert result.exit_code != 0
    assert "cannot reach the graph database" in result.output
    assert "s3cret-value" not in result.output
    assert len(find_artifacts([out])) == 1  # computed before the load failed: 'neurflow load' can finish later


def test_wrong_password_message(bolt, artifacts: Path) -> None:
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    result = CliRunner().invoke(main, ["load", str(artifacts), "--uri", bolt.uri, "--user", bolt.user, "--password", "wrong-pass-123", "--database", bolt.database])
    assert result.exit_code == 4
    assert "refused" in result.output.lower() or "credentials" in result.output.lower()
    assert "wrong-pass-123" not in result.output


@pytest.mark.parametrize("bad", ["missing", "empty", "partial"])
def test_load_bad_artifacts(tmp_path: Path, bad: str) -> None:
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    target = tmp_path / "x"
    if bad != "missing":
        target.mkdir()
    if bad == "partial":
        (target / "circuit.json").write_text("{")
    result = CliRunner().invoke(main, ["load", str(target), "--uri", "bolt://127.0.0.1:1"])
    assert result.exit_code != 0
    if bad == "missing":
        assert "does not exist" in result.output
    elif bad == "empty":
        assert "no circuit artifacts found" in result.output
    else:
        assert result.exit_code == 3 and "incomplete or corrupt" in result.output
