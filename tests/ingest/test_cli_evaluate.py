"""``neurflow evaluate``: inputs, outputs, refusals and the graph summary.

One module fixture writes an ImageFolder of 16x16 pattern images (four classes, one
orientation each), a model file with a ``build`` factory, trains it for a few dozen steps
on the images as the pipeline preprocesses them, and computes the artifact of class 0
with ``neurflow.ingest.pipeline.compute``. The experiments themselves are tested in
``tests/core/test_evaluation.py``; here they run with tiny settings.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import MagicMock

import neo4j
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from neurflow.circuit import CircuitConfig
from neurflow.ingest.cli import evaluate as cli_evaluate
from neurflow.ingest.cli import main
from neurflow.ingest.graph.writer import CLASS_EVAL, CLASS_EXISTS, RUN_EVAL
from neurflow.ingest.graph.writer import write_evaluation_summary as write_summary

SIZE = 16
MODEL_SOURCE = textwrap.dedent(
    """
    from collections import OrderedDict
    from torch import nn

    def build():
        return nn.Sequential(OrderedDict(
            c1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            c2=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
            c3=nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 4),
        ))
    """
)
SMALL = [
    "--samples", "2", "--random-sets", "5", "--taus", "2,4", "--fidelity-draws", "2",
    "--max-cardinality", "3", "--combinations", "4", "--device", "cpu", "--quiet",
]  # fmt: skip


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.model_file = root / "patnet.py"
        self.weights = root / "weights.pt"
        self.artifacts = root / "artifacts"
        self.artifact: Path | None = None

    @property
    def model(self) -> str:
        return f"{self.model_file}:build"

    def args(self, experiment: str, *extra: str, artifact: Path | None = None, data: Path | None = None, weights: Path | None = None) -> list[str]:
        return [
            "evaluate", experiment, str(artifact or self.artifact),
            "--model", self.model, "--weights", str(weights or self.weights), "--data", str(data or self.data),
            "--input-size", str(SIZE), *SMALL, *extra,
        ]  # fmt: skip


def _pattern(c: int, ph: int) -> np.ndarray:
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    return {0: (yy + ph) // 2 % 2, 1: (xx + ph) // 2 % 2, 2: ((xx + ph) // 2 + (yy + ph) // 2) % 2, 3: ((xx + yy + ph) // 2) % 2}[c].astype(np.float64)


def _write_images(data: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for c in range(4):
        folder = data / str(c)
        folder.mkdir(parents=True)
        for i in range(per_class):
            colour = rng.uniform(0.5, 1.0, 3)
            img = 0.1 + 0.8 * _pattern(c, int(rng.integers(0, 4)))[..., None] * colour + rng.normal(0, 0.08, (SIZE, SIZE, 3))
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")


def _import_factory(path: Path):
    spec = importlib.util.spec_from_file_location("_eval_test_patnet", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from neurflow.ingest.images import load_class_images, scan_data
    from neurflow.ingest.models import load_model
    from neurflow.ingest.pipeline import ComputeRequest, compute

    s = Setup(tmp_path_factory.mktemp("evaluate"))
    s.model_file.write_text(MODEL_SOURCE)
    _write_images(s.data, 12, 0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = load_model(s.model, None, input_size=SIZE)
        index = scan_data(s.data)
        xs, ys = [], []
        for c in range(4):
            t = load_class_images(index, c, spec.preprocess).tensor
            xs.append(t)
            ys += [c] * len(t)
        x, y = torch.cat(xs), torch.tensor(ys)
        torch.manual_seed(0)
        model = _import_factory(s.model_file)()
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        for _ in range(60):
            idx = torch.randint(0, len(x), (32,))
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.save(model.state_dict(), s.weights)
        config = CircuitConfig(tau=4, k=6, steps=4, scales=(1.0, 0.5), max_semantic_groups=2, max_neuron_groups=3)
        req = ComputeRequest(
            model=s.model, data=s.data, out=s.artifacts, classes="0", weights=str(s.weights), layers=("fc", "c3", "c2"),
            include_misclassified=True, config=config, device="cpu", input_size=SIZE, thumbnails=False,
        )  # fmt: skip
        outcomes = compute(req, log=lambda _m: None)
        assert [o.status for o in outcomes] == ["computed"], [o.message for o in outcomes]
        s.artifact = outcomes[0].directory
        yield s
    finally:
        torch.set_num_threads(before)


def _invoke(args: list[str]):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        torch.set_num_threads(before)


def test_json_output_files_and_keys(setup: Setup, tmp_path: Path):
    out = tmp_path / "run"
    result = _invoke(setup.args("all", "--format", "json", "--no-graph", "--out", str(out), "--other-images", "2"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"artifact", "run_dir", "class", "model", "config", "summary", "optimality", "fidelity", "correlation", "seconds", "plots"}
    assert doc["class"] == {"index": 0, "name": "0"}
    assert doc["run_dir"] == str(out)
    assert set(doc["summary"]) >= {"faithful", "optimality_diff", "fidelity_mask_core", "fidelity_mask_random", "correlation_spearman"}
    assert {c["tau"] for c in doc["optimality"]["cells"]} == {2, 4}
    assert {c["layer"] for c in doc["optimality"]["cells"]} == {"c3", "c2"}
    assert doc["fidelity"]["n_other"] == 6 and doc["fidelity"]["n_images"] == 12
    assert {c["scope"] for c in doc["fidelity"]["cells"]} == {"single", "multi"}
    assert [layer["max_cardinality"] for layer in doc["correlation"]["layers"]] == [3, 3]
    for name in ("evaluation.json", "summary.json", "correlation.npz", "optimality.png", "fidelity.png", "correlation.png"):
        assert (out / name).is_file(), name
    assert (out / "optimality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    full = json.loads((out / "evaluation.json").read_text())
    assert full["kind"] == "neurflow.evaluation"
    assert len(full["optimality"]["cases"][0]["random_losses"]) == 5
    assert json.loads((out / "summary.json").read_text()) == doc


def test_same_seed_same_numbers_and_table_output(setup: Setup):
    a = _invoke(setup.args("optimality", "--format", "json", "--no-graph", "--no-plots"))
    b = _invoke(setup.args("optimality", "--no-graph", "--no-plots"))  # table, default run dir
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    doc = json.loads(a.stdout)
    assert "optimality (Figure 4)" in b.stdout and "faithful:" in b.stdout and "pooled" in b.stdout
    run_dirs = sorted((setup.artifact / "eval").iterdir())
    assert len(run_dirs) == 2 and Path(doc["run_dir"]) in run_dirs
    second = json.loads((run_dirs[-1] if Path(doc["run_dir"]) == run_dirs[0] else run_dirs[0]).joinpath("summary.json").read_text())
    assert second["optimality"] == doc["optimality"]
    assert "fidelity" not in doc and "correlation" not in doc


def test_other_weights_are_refused(setup: Setup, tmp_path: Path):
    other = tmp_path / "other.pt"
    torch.manual_seed(123)
    torch.save(_import_factory(setup.model_file)().state_dict(), other)
    result = _invoke(setup.args("optimality", "--no-graph", weights=other))
    assert result.exit_code == 3
    assert "not the weights the circuit" in result.stderr and "--weights" in result.stderr


def test_other_images_are_refused(setup: Setup, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(setup.data, data)
    first = sorted((data / "0").iterdir())[0]
    img = np.asarray(Image.open(first)).copy()
    img[0, 0] = 255 - img[0, 0]
    Image.fromarray(img).save(first)
    result = _invoke(setup.args("optimality", "--no-graph", data=data))
    assert result.exit_code == 3
    assert "data fingerprint" in result.stderr and "preprocessing" in result.stderr
    # other preprocessing of the same files: refused the same way
    result = _invoke(setup.args("optimality", "--no-graph", "--no-normalize"))
    assert result.exit_code == 3 and "data fingerprint" in result.stderr
    # images gone from the data root
    (data / "0" / first.name).unlink()
    result = _invoke(setup.args("optimality", "--no-graph", data=data))
    assert result.exit_code == 3 and "missing or unreadable" in result.stderr


def test_missing_artifact_is_an_input_error(setup: Setup, tmp_path: Path):
    result = _invoke(setup.args("all", "--no-graph", artifact=tmp_path / "nope"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    (tmp_path / "empty").mkdir()
    result = _invoke(setup.args("all", "--no-graph", artifact=tmp_path / "empty"))
    assert result.exit_code == 2 and "no circuit artifacts" in result.stderr
    result = _invoke(["evaluate", "all", "--data", str(setup.data), "--no-graph"])
    assert result.exit_code == 2 and "at least one artifact" in result.stderr
    result = _invoke(setup.args("bogus", "--no-graph"))
    assert result.exit_code == 2 and "bogus" in result.output
    result = _invoke(setup.args("optimality", "--no-graph", "--random-sets", "0"))
    assert result.exit_code == 2 and "random_sets" in result.stderr
    result = _invoke(setup.args("optimality", "--no-graph", "--layers", "fc"))
    assert result.exit_code == 2 and "choose from ['c3', 'c2']" in result.stderr


def test_layers_option(setup: Setup, tmp_path: Path):
    result = _invoke(setup.args("optimality", "--no-graph", "--no-plots", "--layers", "c2", "--format", "json", "--out", str(tmp_path)))
    assert result.exit_code == 0, result.output
    assert {c["layer"] for c in json.loads(result.stdout)["optimality"]["cells"]} == {"c2"}


def test_corrupt_artifact_is_an_artifact_error(setup: Setup, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(setup.artifact, broken, ignore=shutil.ignore_patterns("eval"))
    (broken / "arrays.npz").write_bytes(b"not an npz")
    result = _invoke(setup.args("optimality", "--no-graph", artifact=broken))
    assert result.exit_code == 3 and "checksum" in result.stderr


def test_summary_is_written_through_the_connection(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    driver = MagicMock(spec=neo4j.Driver)
    driver.execute_query.return_value = ([{"n": 1}], None, None)
    conn = MagicMock()
    conn.driver, conn.database = driver, "neurflow"
    conn.__enter__.return_value = conn
    opened = []
    monkeypatch.setattr(cli_evaluate, "connect_from_options", lambda *a: opened.append(a) or conn)
    result = _invoke(setup.args("optimality", "--no-plots", "--out", str(tmp_path / "r"), "--uri", "bolt://example:7687"))
    assert result.exit_code == 0, result.output
    assert opened == [("bolt://example:7687", None, None, None)]
    assert [c.args[0] for c in driver.execute_query.call_args_list] == [CLASS_EXISTS]
    work = driver.session.return_value.__enter__.return_value.execute_write.call_args.args[0]
    tx = MagicMock()
    work(tx)  # both writes in one managed transaction
    assert [c.args[0] for c in tx.run.call_args_list] == [CLASS_EVAL, RUN_EVAL]
    params = tx.run.call_args_list[0].kwargs
    assert params["cls"].endswith("/c0") and params["cls"].startswith("patnet.build@")
    props = params["props"]
    assert set(props) >= {"eval_optimality_diff", "eval_optimality_ci_low", "evaluated_at", "eval_experiments", "eval_seed"}
    assert "eval_faithful" not in props  # fidelity did not run
    assert props["eval_experiments"] == ["optimality"]
    assert all(isinstance(v, (bool, int, float, str, list)) for v in props.values())
    assert "written" in result.stderr


def test_write_summary_skips_a_class_not_in_the_graph():
    driver = MagicMock(spec=neo4j.Driver)
    driver.execute_query.return_value = ([{"n": 0}], None, None)
    assert write_summary(driver, "db", "m@x/c1", {"eval_faithful": True}) is False
    assert [c.args[0] for c in driver.execute_query.call_args_list] == [CLASS_EXISTS]


def test_summary_lands_on_class_and_run_nodes(setup: Setup, graph):
    """On the embedded server: load the artifact, write the summary, read it back."""
    from neurflow.ingest.graph.schema import class_uid, model_uid
    from neurflow.ingest.pipeline import load, read_artifact

    load(graph.driver, graph.database, [setup.artifact], log=lambda _m: None)
    circuit, _, _ = read_artifact(setup.artifact)
    cls = class_uid(model_uid(circuit.model_name, circuit.model_fingerprint), circuit.class_index)
    props = {"eval_faithful": True, "eval_optimality_diff": 0.25, "evaluated_at": "2025-01-01T00:00:00Z", "eval_experiments": ["optimality", "fidelity"]}
    assert write_summary(graph.driver, graph.database, cls, props) is True
    records, _, _ = graph.driver.execute_query(
        "MATCH (c:Class {uid: $cls})-[:BUILT_BY]->(r:Run) RETURN c.eval_faithful AS cf, c.eval_optimality_diff AS cd, "
        "r.eval_faithful AS rf, r.evaluated_at AS rt, c.eval_experiments AS ce",
        parameters_={"cls": cls},
        database_=graph.database,
    )
    assert len(records) == 1
    rec = records[0]
    assert rec["cf"] is True and rec["cd"] == 0.25 and rec["rf"] is True and rec["rt"] == "2025-01-01T00:00:00Z"
    assert list(rec["ce"]) == ["optimality", "fidelity"]


def test_defaults_come_from_the_artifacts_provenance(setup: Setup, tmp_path: Path):
    """No --model/--weights/--data/--input-size: run.json says how the artifact was made."""
    run = json.loads((setup.artifact / "run.json").read_text())
    assert run["data_root"] == str(Path(setup.data).absolute()) and run["weights_arg"] == str(Path(setup.weights).absolute())
    result = _invoke(["evaluate", "optimality", str(setup.artifact), *SMALL, "--no-graph", "--format", "json", "--out", str(tmp_path / "prov")])
    assert result.exit_code == 0, result.output + result.stderr
    with_options = _invoke(setup.args("optimality", "--no-graph", "--format", "json", "--out", str(tmp_path / "opts")))
    assert with_options.exit_code == 0
    assert json.loads(result.stdout)["optimality"] == json.loads(with_options.stdout)["optimality"]
    # an override that contradicts the record is a clear error, not another model
    result = _invoke(["evaluate", "optimality", str(setup.artifact), *SMALL, "--no-graph", "--input-size", str(SIZE * 2)])
    assert result.exit_code == 3 and "computed with preprocessing" in result.stderr, result.stderr
