"""A small real graph for the web explorer and report tests, built once per session.

* ``web_data`` (session): an ImageFolder of three classes ("bee", "fish", "kite") of
  40x48 images with coloured shapes, and the circuits of a tiny CNN on it computed
  through ``neurflow compute`` (so artifacts, thumbnails and run records are exactly what
  the CLI writes), four layers deep.
* ``web_graph`` (module): the session's embedded server (``bolt``) wiped, the artifacts
  loaded and linked, then what ``neurflow debug`` writes planted on a few groups (bias
  evidence, Image nodes and DROPS to real files of the data folder) and what ``neurflow
  evaluate`` writes on one class (with an evaluation plot on disk).

Expected answers in the tests come from the query library run directly, never from the
pages themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "ingest" / "tiny_model.py") + ":make"
CLASSES = ("bee", "fish", "kite")
COMPUTE_ARGS = ["--model", TINY, "--layers", "fc,c3,c2,c1", "--input-size", "32", "--include-misclassified",
                "--tau", "4", "--k", "10", "--steps", "8", "--quiet"]


@dataclass
class WebGraph:
    conn: object
    data: Path
    artifacts: Path
    model: str
    biased: list = field(default_factory=list)   # planted biased group uids, most biased first
    fp_images: dict = field(default_factory=dict)  # group uid -> Image paths planted as its DROPS (fp)

    def run(self, name: str, **params):
        from neurflow.queries import run_query

        return run_query(self.conn.driver, name, params, database=self.conn.database)


def _draw(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    img = (rng.random((40, 48, 3)) * 80).astype(np.uint8) + np.array([30, 90, 40], dtype=np.uint8)
    y, x = rng.integers(4, 24), rng.integers(4, 30)
    img[y:y + 14, x:x + 14] = colour
    return img


@pytest.fixture(scope="session")
def web_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, artifact folder) of the three classes, computed through the CLI."""
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    data = tmp_path_factory.mktemp("web_data")
    rng = np.random.default_rng(0)
    colours = {"bee": (230, 200, 30), "fish": (40, 90, 220), "kite": (220, 40, 60)}
    for name in CLASSES:
        (data / name).mkdir()
        for i in range(5):
            Image.fromarray(_draw(rng, colours[name])).save(data / name / f"{i}.png")
    out = tmp_path_factory.mktemp("web_artifacts")
    result = CliRunner().invoke(main, ["compute", "--data", str(data), "--out", str(out), *COMPUTE_ARGS])
    assert result.exit_code == 0, result.output
    return data, out


def _write(conn, query: str, **params) -> None:
    from neurflow.ingest.graph.writer import run_write

    run_write(conn.driver, conn.database, query, **params)


@pytest.fixture(scope="module")
def web_graph(bolt, web_data) -> WebGraph:
    """Wipe, load and link the artifacts; plant debug and evaluation evidence."""
    from neurflow.ingest.graph.atlas import link_artifacts
    from neurflow.ingest.pipeline import find_artifacts, load

    data, out = web_data
    bolt.driver.execute_query("MATCH (n) DETACH DELETE n", database_=bolt.database)
    outcomes = load(bolt.driver, bolt.database, find_artifacts([out]), log=lambda _m: None)
    assert [o.status for o in outcomes] == ["loaded"] * 3, [o.message for o in outcomes]
    link_artifacts(bolt, [out], quiet=True)
    model = bolt.driver.execute_query("MATCH (m:Model) RETURN m.uid AS uid", database_=bolt.database).records[0]["uid"]
    state = WebGraph(conn=bolt, data=data, artifacts=out, model=model)

    # neurflow debug's evidence: bee's deepest group most biased, one kite group less, fish scored not biased
    circuits = {r["class_name"]: r for r in state.run("classes")}
    picks = []
    for name, depth, score, biased in (("bee", 3, 0.61, True), ("kite", 2, 0.33, True), ("fish", 1, 0.05, False)):
        groups = [r["group"] for r in state.run("class_circuit", **{"class": name}) if r["depth"] == depth]
        picks.append((groups[0], name, score, biased))
    rows = []
    for uid, name, score, biased in picks:
        rows.append({"uid": uid, "props": {"bias_score": score, "bias_rank": 1, "biased": biased, "fp_metric": 0.7, "tp_metric": 0.8,
                                           "mask_fp_flip": 0.9 if biased else 0.1, "random_fp_flip": 0.2, "effect_z": 3.1, "effect_p": 0.03,
                                           "mask_tp_drop": 0.04, "shared_classes": 1, "shared_fraction": 0.5}})
    _write(bolt, "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.uid}) SET g += r.props", rows=rows)
    _write(bolt, "UNWIND $uids AS u MATCH (c:Class {uid: u}) SET c.debugged_at = '2025-01-02T00:00:00Z', c.bias_threshold = 0.25",
           uids=sorted(r["class"] for r in circuits.values()))
    drops = []
    for uid, name, _score, _biased in picks:
        others = [c for c in CLASSES if c != name]
        paths = [f"{others[0]}/{i}.png" for i in range(3)] + [f"{name}/0.png"]
        state.fp_images[uid] = paths[:3]
        for rank, path in enumerate(paths):
            drops.append({"group": uid, "uid": f"{model}/img/{path}", "path": path, "model": model, "source": "fp" if rank < 3 else "tp",
                          "rank": rank if rank < 3 else 0, "logit_drop": 2.0 - 0.3 * rank})
    _write(bolt, "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.group}) MERGE (i:Image {uid: r.uid}) SET i.path = r.path, i.model = r.model "
                 "MERGE (g)-[d:DROPS {source: r.source, rank: r.rank}]->(i) SET d.logit_drop = r.logit_drop", rows=drops)
    state.biased = [uid for uid, _n, _s, b in sorted(picks, key=lambda p: -p[2]) if b]

    # neurflow evaluate's evidence on bee, with a plot in <artifact>/eval/<time>/
    bee = circuits["bee"]
    artifact = Path(state.run("class_circuit", **{"class": "bee"})[0]["artifact"])
    run_dir = artifact / "eval" / "20250103T000000Z"
    run_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((60, 90, 3), 200, dtype=np.uint8)).save(run_dir / "fidelity.png")
    (run_dir / "evaluation.json").write_text(json.dumps({"plots": ["fidelity.png"], "evaluated_at": "2025-01-03T00:00:00Z"}))
    _write(bolt, "MATCH (c:Class {uid: $u}) SET c.eval_faithful = true, c.eval_fidelity_mask_core = 0.1, c.eval_fidelity_mask_random = 0.8, "
                 "c.evaluated_at = '2025-01-03T00:00:00Z'", u=bee["class"])
    return state
