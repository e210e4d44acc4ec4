"""`neurflow debug`: evidence written in one transaction, and every bad input's message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neurflow.ingest import debugging
from neurflow.ingest.cli import main
from neurflow.ingest.errors import DatabaseError
from neurflow.ingest.pipeline import find_artifacts, load

from .conftest import TINY
from .tiny_model import make


@pytest.fixture(scope="module")
def predicted(image_folder: Path) -> int:
    """The class the untrained tiny model predicts for the images (the one with false positives)."""
    from neurflow.ingest.images import load_class_images, scan_data
    from neurflow.ingest.models import Preprocess

    data = scan_data(image_folder)
    pre = Preprocess(32, 37, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    imgs = torch.cat([load_class_images(data, i, pre).tensor for i in range(3)])
    with torch.no_grad():
        preds = make().eval()(imgs).argmax(1)
    counts = torch.bincount(preds, minlength=3)
    assert counts.max() > 4, "the tiny model must predict some images of other classes as one class"
    return int(counts.argmax())


def _db_args(conn) -> list[str]:
    from neurflow.ingest import embedded_db

    return ["--uri", conn.uri, "--user", conn.user, "--password", embedded_db.password(), "--database", conn.database]


def _debug(conn, image_folder, artifacts, *extra):
    args = ["debug", "--model", TINY, "--data", str(image_folder), "--out", str(artifacts), "--input-size", "32", "--device", "cpu", "--quiet"]
    return CliRunner().invoke(main, [*args, *extra, *(_db_args(conn) if conn is not None else ["--no-graph"])])


def test_debug_writes_ranked_evidence(graph, image_folder: Path, artifacts: Path, predicted: int) -> None:
    load(graph.driver, graph.database, find_artifacts([artifacts]), log=lambda _: None)
    result = _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "2", "--draws", "20", "--max-draws", "200", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("[") :])
    groups = doc[0]["groups"]
    assert doc[0]["class"]["index"] == predicted and doc[0]["n_fp"] >= 2
    assert doc[0]["test"]["fdr"] == "Benjamini-Hochberg" and doc[0]["test"]["n_tests"] == len(groups)
    assert doc[0]["verdict"] in ("false positives explained; spuriousness unknown", "no group explains the false positives")
    assert {"layer", "neurons", "bias_score", "fp_metric", "fp_flip", "p_fp_flip", "q_value", "verdict", "collateral_tp", "confusers"} <= groups[0].keys()
    for g in groups:
        assert 0.0 <= g["bias_score"] <= 1.0
        assert 1 / 201 - 1e-12 <= g["p_fp_flip"] <= 1.0 and g["q_value"] >= g["p_fp_flip"] - 1e-12
        assert g["causes_fp"] == (g["q_value"] <= 0.05)
        assert g["verdict"] == ("causes false positives; spuriousness unknown" if g["causes_fp"] else "not significant")  # no labels
        if g["fp_flip"] <= g["random_fp_flip_mean"]:
            assert g["bias_score"] == 0.0  # flips no more false positives than random sets: no effect to rank
    keys = [(not g["causes_fp"], -g["bias_score"], g["p_fp_flip"]) for g in groups]
    assert keys == sorted(keys)
    records, _, _ = graph.driver.execute_query(
        "MATCH (g:NeuronGroup {class: $cls}) WHERE g.bias_rank IS NOT NULL RETURN g.bias_rank AS r, g.bias_score AS s, g.q_value AS q, g.verdict AS v ORDER BY r",
        parameters_={"cls": f"{graph_model(graph)}/c{predicted}"},
        database_=graph.database,
    )
    assert [r["r"] for r in records] == list(range(1, len(groups) + 1))
    assert [r["s"] for r in records] == pytest.approx([g["bias_score"] for g in groups])
    assert [r["q"] for r in records] == pytest.approx([g["q_value"] for g in groups])
    assert [r["v"] for r in records] == [g["verdict"] for g in groups]
    records, _, _ = graph.driver.execute_query("MATCH (:NeuronGroup)-[d:DROPS]->(:Image) RETURN count(d) AS n", database_=graph.database)
    assert records[0]["n"] == sum(len(g["top_images"]) for g in groups)
    records, _, _ = graph.driver.execute_query("MATCH (c:Class {index: $i}) RETURN c.debug_verdict AS v, c.debug_n_tests AS m", parameters_={"i": predicted}, database_=graph.database)
    assert records[0]["v"] == doc[0]["verdict"] and records[0]["m"] == len(groups)


def graph_model(conn) -> str:
    records, _, _ = conn.driver.execute_query("MATCH (m:Model) RETURN m.uid AS uid", database_=conn.database)
    return records[0]["uid"]


def test_too_few_false_positives_is_insufficient_evidence(graph, image_folder: Path, artifacts: Path, predicted: int) -> None:
    """Below the evidence floor a class gets the verdict, in the table, the JSON and the graph,
    and earlier evidence of its groups is cleared."""
    load(graph.driver, graph.database, find_artifacts([artifacts]), log=lambda _: None)
    assert _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "2", "--draws", "5", "--max-draws", "20").exit_code == 0
    result = _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "1000")
    assert result.exit_code == 0, result.output
    assert "insufficient evidence" in result.output and "fewer than 1000 false positives" in result.output
    doc = json.loads(_debug(None, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "1000", "--format", "json").output)
    assert doc[0]["verdict"] == "insufficient evidence" and doc[0]["groups"] == [] and doc[0]["n_fp"] < 1000
    records, _, _ = graph.driver.execute_query(
        "MATCH (c:Class {index: $i}) OPTIONAL MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup) WHERE g.bias_score IS NOT NULL "
        "RETURN c.debug_verdict AS v, count(g) AS scored", parameters_={"i": predicted}, database_=graph.database)
    assert records[0]["v"] == "insufficient evidence" and records[0]["scored"] == 0


def test_class_not_in_the_graph(graph, image_folder: Path, artifacts: Path, predicted: int) -> None:
    result = _debug(graph, image_folder, artifacts, "--classes", str(predicted))
    assert result.exit_code == 2
    assert "has no ingested circuit in the graph" in result.output


def test_a_bad_class_in_a_list_writes_nothing(graph, image_folder: Path, artifacts: Path, predicted: int) -> None:
    """The first class is loaded, the second is not: the command fails before writing the
    first class's evidence."""
    dirs = find_artifacts([artifacts])
    load(graph.driver, graph.database, [d for d in dirs if d.name.startswith(f"{predicted:04d}-")], log=lambda _: None)
    other = (predicted + 1) % 3
    result = _debug(graph, image_folder, artifacts, "--classes", f"{predicted},{other}", "--min-fp", "2")
    assert result.exit_code == 2
    assert "has no ingested circuit in the graph" in result.output
    records, _, _ = graph.driver.execute_query(
        "MATCH (g:NeuronGroup) WHERE g.bias_score IS NOT NULL RETURN count(g) AS n", database_=graph.database
    )
    assert records[0]["n"] == 0
    result = _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "2", "--draws", "5", "--max-draws", "20")  # the good class alone is written
    assert result.exit_code == 0, result.output
    records, _, _ = graph.driver.execute_query(
        "MATCH (g:NeuronGroup) WHERE g.bias_score IS NOT NULL RETURN count(g) AS n", database_=graph.database
    )
    assert records[0]["n"] > 0


def test_database_going_down_during_debug_gives_the_project_message(image_folder: Path, artifacts: Path, predicted: int, monkeypatch) -> None:
    """The database disappears between the checks and the write: exit 4 with a message, no traceback."""
    import neo4j

    class Gone:
        def __init__(self, *a, **k) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def execute_write(self, work):
            raise neo4j.exceptions.ServiceUnavailable("connection refused")

    conn = type("Conn", (), {"driver": type("D", (), {"session": lambda self, **k: Gone()})(), "database": "x"})()
    monkeypatch.setattr(debugging, "_class_loaded", lambda *a: True)
    from neurflow.ingest.cli import debug as cli_debug

    monkeypatch.setattr(cli_debug, "connect_from_options", lambda *a: _Ctx(conn))
    result = CliRunner().invoke(main, ["debug", "--model", TINY, "--data", str(image_folder), "--out", str(artifacts), "--input-size", "32",
                                       "--device", "cpu", "--quiet", "--classes", str(predicted), "--min-fp", "2", "--draws", "5", "--max-draws", "20"])
    assert result.exit_code == 4, result.output
    assert "became unreachable while writing the debug evidence" in result.output
    assert "Traceback" not in result.output


class _Ctx:
    def __init__(self, conn) -> None:
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc) -> None:
        return None


def test_other_weights_are_refused(tmp_path: Path, image_folder: Path, artifacts: Path, predicted: int) -> None:
    torch.manual_seed(1)
    other = make()
    for p in other.parameters():
        p.data.add_(0.01)
    weights = tmp_path / "other.pt"
    torch.save(other.state_dict(), weights)
    result = _debug(None, image_folder, artifacts, "--classes", str(predicted), "--weights", str(weights))
    assert result.exit_code == 2
    assert "differ from those of class" in result.output


def test_missing_artifact_and_unreadable_images(tmp_path: Path, image_folder: Path, artifacts: Path, predicted: int) -> None:
    result = _debug(None, image_folder, tmp_path / "none", "--classes", str(predicted))
    assert result.exit_code != 0 and "does not exist" in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    result = _debug(None, image_folder, artifacts, "--classes", str(predicted), "--images", str(bad))
    assert result.exit_code == 2 and "could be read as an image" in result.output


def test_evidence_write_is_all_or_nothing(graph, artifacts: Path, monkeypatch) -> None:
    """A failure inside the write leaves no partial evidence."""
    load(graph.driver, graph.database, find_artifacts([artifacts])[:1], log=lambda _: None)
    cls = f"{graph_model(graph)}/c0"
    records, _, _ = graph.driver.execute_query("MATCH (g:NeuronGroup {class: $cls}) RETURN g.uid AS uid", parameters_={"cls": cls}, database_=graph.database)
    rows = {"groups": [{"uid": r["uid"], "props": {"bias_score": 0.5}} for r in records], "images": [], "patches": []}
    failing = (*debugging.DEBUG_WRITES[:3], ("images", "UNWIND $rows AS r RETURN 1 / 0 AS boom"))
    monkeypatch.setattr(debugging, "DEBUG_WRITES", failing)
    rows["images"] = [{"x": 1}]
    result = debugging.ClassDebug(0, 1, 1, 0, ())
    with pytest.raises(DatabaseError, match="writing the debug evidence failed"):
        debugging.write_debug(graph.driver, graph.database, cls, rows, result)
    records, _, _ = graph.driver.execute_query(
        "MATCH (g:NeuronGroup {class: $cls}) WHERE g.bias_score IS NOT NULL RETURN count(g) AS n", parameters_={"cls": cls}, database_=graph.database
    )
    assert records[0]["n"] == 0


def test_shared_concepts_member_mean_is_bounded_by_the_union(artifacts: Path) -> None:
    from neurflow.atlas import build_atlas
    from neurflow.ingest.pipeline import read_artifact

    circuits = [read_artifact(d)[0] for d in find_artifacts([artifacts])]
    assert len(circuits) >= 2
    others = len(circuits) - 1
    atlas = build_atlas(circuits)
    for target in circuits:
        counts, fractions = debugging.shared_concepts(atlas, len(circuits), target)
        assert set(counts) == set(fractions) == {(g.layer, g.index) for g in target.groups}
        for g in target.groups:
            key = (g.layer, g.index)
            assert 0.0 <= fractions[key] <= counts[key] / others + 1e-12  # a mean of subsets of the union
            if len(g.members) == 1:
                assert fractions[key] == pytest.approx(counts[key] / others)
    assert debugging.shared_concepts(None, 1, circuits[0]) == ({}, {})


def test_table_names_groups_with_the_same_neurons() -> None:
    from types import SimpleNamespace as G

    from neurflow.ingest.cli.debug import neuron_cells

    groups = [G(layer="b4", channels=(5, 16, 28)), G(layer="b3", channels=(28, 16, 5)), G(layer="b4", channels=(28, 5, 16)), G(layer="b4", channels=tuple(range(10)))]
    assert neuron_cells(groups) == ["[5, 16, 28]", "[28, 16, 5]", "same neurons as rank 1", "[0, 1, 2, 3, 4, 5, 6, 7] +2 more"]


def test_debug_state_is_declared_once_and_cleared_by_a_reload(graph, image_folder: Path, artifacts: Path, predicted: int) -> None:
    """What debug writes on Class is exactly CLASS_DEBUG_PROPS (bar the legacy one), and
    reloading the class (a possibly recomputed circuit) leaves no stale verdict."""
    import re

    from neurflow.ingest.graph.writer import CLASS_DEBUG_PROPS

    statement = dict(debugging.DEBUG_WRITES)["class"]
    assert set(re.findall(r"c\.(\w+) = \$", statement)) == set(CLASS_DEBUG_PROPS) - {"bias_threshold"}
    assert set(re.findall(r"g\.(\w+)", dict(debugging.DEBUG_WRITES)["reset"])) == set(debugging.GROUP_PROPS)
    mine = [d for d in find_artifacts([artifacts]) if d.name.startswith(f"{predicted:04d}-")]
    load(graph.driver, graph.database, mine, log=lambda _: None)
    assert _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "2", "--draws", "5", "--max-draws", "20").exit_code == 0
    query = ("MATCH (c:Class {index: $i}) OPTIONAL MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup) WHERE g.verdict IS NOT NULL "
             "RETURN c.debug_verdict AS v, c.debugged_at AS at, count(g) AS n")
    before = graph.driver.execute_query(query, parameters_={"i": predicted}, database_=graph.database).records[0]
    assert before["v"] is not None and before["at"] is not None and before["n"] > 0
    load(graph.driver, graph.database, mine, log=lambda _: None)  # load always replaces the class's subgraph
    after = graph.driver.execute_query(query, parameters_={"i": predicted}, database_=graph.database).records[0]
    assert (after["v"], after["at"], after["n"]) == (None, None, 0)



def test_part_of_class_from_a_label() -> None:
    """Pixel shares decide when the labeller has them (own >= 0.5: yes, <= 0.25: no, else
    unknown); otherwise the labeller's own answer."""
    from types import SimpleNamespace as L

    assert debugging.part_of_class(L(class_share=0.5, part_of_class=None)) is True
    assert debugging.part_of_class(L(class_share=0.08, part_of_class=None)) is False  # a background split over five concepts
    assert debugging.part_of_class(L(class_share=0.25, part_of_class=True)) is False
    assert debugging.part_of_class(L(class_share=0.4, part_of_class=False)) is None
    assert debugging.part_of_class(L(class_share=None, part_of_class=False)) is False  # an LLM's answer
    assert debugging.part_of_class(L(class_share=None, part_of_class=None)) is None


def test_debug_needs_no_model_or_data_options_on_loaded_classes(graph, image_folder: Path, artifacts: Path, predicted: int, tmp_path: Path, monkeypatch) -> None:
    """Right after ingest: the graph names the artifact folders, their run.json the model,
    weights, preprocessing and data root; a contradicting --weights is refused."""
    load(graph.driver, graph.database, find_artifacts([artifacts]), log=lambda _: None)
    monkeypatch.chdir(tmp_path)  # no ./artifacts here
    monkeypatch.delenv("NEURFLOW_ARTIFACTS", raising=False)
    common = ["debug", "--classes", str(predicted), "--min-fp", "2", "--draws", "20", "--max-draws", "200", "--format", "json", "--quiet", *_db_args(graph)]
    result = CliRunner().invoke(main, common)
    assert result.exit_code == 0, result.output
    bare = json.loads(result.output[result.output.index("[") :])
    explicit = _debug(graph, image_folder, artifacts, "--classes", str(predicted), "--min-fp", "2", "--draws", "20", "--max-draws", "200", "--format", "json")
    assert explicit.exit_code == 0, explicit.output
    assert bare == json.loads(explicit.output[explicit.output.index("[") :])
    other = tmp_path / "other.pt"
    state = make().state_dict()
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, other)
    result = CliRunner().invoke(main, [*common, "--weights", str(other)])
    assert result.exit_code == 2 and "differ from those of class" in result.output
