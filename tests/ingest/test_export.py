"""``neurflow export --format neo4j-admin``: the CSV files hold the graph ``neurflow load`` writes.

neo4j-admin itself cannot run here (the embedded database is ArcadeDB), so the files are read
back with their header types (``read_neo4j_admin``, what neo4j-admin would import) and
compared with the row builders' output and with the graph the loader writes.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from neurflow.ingest.graph.export import (
    ARRAY_DELIMITER,
    _type_of,
    export_artifacts,
    graph_of_rows,
    read_neo4j_admin,
    write_neo4j_admin,
)
from neurflow.ingest.graph.rows import artifact_rows
from neurflow.ingest.pipeline import find_artifacts

from .test_load import LABELS, RELS, expected_counts


@pytest.fixture(scope="module")
def exported(artifacts: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("export")
    res = export_artifacts([artifacts], out)
    return res, read_neo4j_admin(out)


def test_counts_and_identities_equal_the_row_builders(artifacts: Path, exported) -> None:
    res, (nodes, rels) = exported
    dirs = find_artifacts([artifacts])
    want = expected_counts(dirs)
    for label in LABELS:
        assert sum(1 for (lab, _) in nodes if lab == label) == want[label], label
    for rel in RELS:
        assert sum(1 for k in rels if k[1] == rel) == want[rel], rel
    assert res.nodes == len(nodes) and res.relationships == len(rels)
    # every uid and every property of the rows, value for value (floats bit-exact)
    for d in dirs:
        r = artifact_rows(d)
        for row in r.rows["neuron_group"]:
            got = nodes[("NeuronGroup", row["uid"])]
            assert got == {"uid": row["uid"], **{k: v for k, v in row["props"].items() if v is not None and v != []}}
        for row in r.rows["contributes"]:
            got = rels[("contributes", "CONTRIBUTES", "Neuron", row["child"], "SemanticGroup", row["sg"])]
            assert got == {"weight": row["weight"], "abs_weight": row["abs_weight"], "importance": row["importance"], "rank": row["rank"], "class": row["cls"]}
        for row in r.rows["group_paths"]:
            got = nodes[("GroupPaths", row["uid"])]
            assert got.get("weights", []) == row["props"]["weights"] and got.get("indices", []) == row["props"]["indices"]
        cls = nodes[("Class", r.cls)]
        assert cls["complete"] is True and cls["layers"] == r.rows["class"][0]["props"]["layers"]
    # shared nodes once: every class's neurons, each a single node
    neuron_uids = {row["uid"] for d in dirs for row in artifact_rows(d).rows["neuron"]}
    assert {uid for (lab, uid) in nodes if lab == "Neuron"} == neuron_uids


def test_headers_follow_neo4j_admin_conventions(exported) -> None:
    res, _ = exported
    headers = {p.name: next(csv.reader(p.open(encoding="utf-8"))) for p in (*res.node_files, *res.relationship_files)}
    assert headers["nodes_Neuron.csv"][:2] == ["uid:ID(Neuron)", ":LABEL"]
    assert "channel:long" in headers["nodes_Neuron.csv"]
    assert "channels:long[]" in headers["nodes_NeuronGroup.csv"] and "root:boolean" in headers["nodes_NeuronGroup.csv"]
    assert headers["relationships_contributes_CONTRIBUTES.csv"][:3] == [":START_ID(Neuron)", ":END_ID(SemanticGroup)", ":TYPE"]
    assert "weight:double" in headers["relationships_flows_to_FLOWS_TO.csv"]
    assert "layers:string[]" in headers["nodes_Class.csv"]
    readme = (res.directory / "README.txt").read_text()
    assert res.command in readme and res.command.startswith("neo4j-admin database import full ")
    assert f"--array-delimiter={ARRAY_DELIMITER}" in res.command
    for p in (*res.node_files, *res.relationship_files):
        assert f"={p.name}" in res.command
    assert "CREATE CONSTRAINT neuron_uid IF NOT EXISTS" in (res.directory / "schema.cypher").read_text()


def test_same_graph_as_load_and_link(graph, artifacts: Path, exported) -> None:
    """Loaded into the embedded database by `load` + `link`: the same nodes, properties and
    relationships as the export reads back (up to loaded_at, and nulls/empty lists, which
    the CSV format cannot carry)."""
    from neurflow.ingest.graph.atlas import link_artifacts
    from neurflow.ingest.pipeline import load

    dirs = find_artifacts([artifacts])
    load(graph.driver, graph.database, dirs, log=lambda _: None)
    link_artifacts(graph, dirs, quiet=True)
    _, (nodes, rels) = exported

    def clean(props: dict) -> dict:
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in props.items() if k != "loaded_at" and v is not None and v != []}

    records, _, _ = graph.driver.execute_query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS p", database_=graph.database)
    db_nodes = {(r["labels"][0], r["p"]["uid"]): clean(r["p"]) for r in records}
    assert all(len(r["labels"]) == 1 for r in records)
    assert db_nodes == {k: clean(v) for k, v in nodes.items()}
    records, _, _ = graph.driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN type(r) AS t, labels(a)[0] AS la, a.uid AS a, labels(b)[0] AS lb, b.uid AS b, properties(r) AS p",
        database_=graph.database,
    )
    db_rels = {(r["t"], r["la"], r["a"], r["lb"], r["b"]): clean(r["p"]) for r in records}
    assert len(db_rels) == len(records)
    assert db_rels == {k[1:]: clean(v) for k, v in rels.items()}


def test_cli_writes_files_and_prints_the_command(artifacts: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from neurflow.ingest.cli.export import export

    result = CliRunner().invoke(export, ["--format", "neo4j-admin", str(artifacts), "--to", str(tmp_path / "csv"), "--no-link"])
    assert result.exit_code == 0, result.output
    assert "neo4j-admin database import full" in result.output
    assert (tmp_path / "csv" / "nodes_Neuron.csv").is_file() and not (tmp_path / "csv" / "nodes_Concept.csv").exists()
    missing = CliRunner().invoke(export, [str(tmp_path / "nope"), "--to", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_values_that_have_no_csv_type_are_refused(tmp_path: Path) -> None:
    assert _type_of("x", [1, 2.5, None]) == "double"
    assert _type_of("x", [[], [1]]) == "long[]"
    assert _type_of("x", [None, []]) is None
    with pytest.raises(ValueError, match="mixes lists"):
        _type_of("x", [[1], 2])
    with pytest.raises(ValueError, match="types"):
        _type_of("x", ["a", 1])
    nodes = {("Class", "m/c0"): {"uid": "m/c0", "layers": ["a;b"]}}
    with pytest.raises(ValueError, match="array delimiter"):
        write_neo4j_admin(nodes, {}, tmp_path)


def test_special_floats_and_text_round_trip(tmp_path: Path) -> None:
    nodes = {("Run", "run-1"): {"uid": "run-1", "note": 'a "quoted",\nmultiline text', "x": float("nan"), "y": -math.inf, "z": 0.1 + 0.2, "ok": False}}
    write_neo4j_admin(nodes, {}, tmp_path)
    (got,) = read_neo4j_admin(tmp_path)[0].values()
    assert got["note"] == 'a "quoted",\nmultiline text' and math.isnan(got["x"]) and got["y"] == -math.inf and got["z"] == 0.1 + 0.2
    assert got["ok"] is False


def test_graph_of_rows_merges_shared_nodes(artifacts: Path) -> None:
    rows = [artifact_rows(d) for d in find_artifacts([artifacts])]
    nodes, _ = graph_of_rows(rows)
    assert sum(1 for lab, _ in nodes if lab == "Model") == 1
    assert sum(1 for lab, _ in nodes if lab == "Class") == len(rows)
