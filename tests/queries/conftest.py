"""A small real graph for the query tests, built once and loaded once per test module.

* ``query_artifacts`` (session): the circuits of 3 classes ("bee", "fish", "kite") of a
  seeded random CNN on random images, computed with ``neurflow.build_circuit`` and saved
  as artifacts (with a ``run.json`` and exemplar thumbnails, as ``neurflow compute``
  writes them) in a temporary folder. No database.
* ``loaded`` (module): the session's embedded server (``bolt`` from tests/conftest.py)
  wiped, then the artifacts loaded with ``neurflow.ingest.pipeline.load`` and linked
  with ``neurflow.ingest.graph.atlas.link_artifacts``, then the properties that
  ``neurflow debug`` and ``neurflow evaluate`` write planted on a few groups and classes.
  The tests of a module only read it. (The ``graph`` fixture wipes per test; this one
  loads once for every query test of a module instead.)

Expected answers are recomputed from the artifacts (``neurflow.load_circuit``) and from
the loader's own row builders, never copied from the database.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLASSES = ((0, "bee"), (1, "fish"), (2, "kite"))
LAYERS = ("fc", "conv3", "conv2", "conv1")
MODEL_NAME = "tinyq"


@dataclass(frozen=True)
class Artifacts:
    """The computed artifacts: their folder, one directory and one circuit per class index."""

    root: Path
    dirs: dict[int, Path]
    circuits: dict  # class index -> neurflow.Circuit, as loaded back from the artifact


@dataclass
class Loaded:
    """The loaded graph and what the tests compare it with.

    Attributes:
        conn: the session ``Connection`` (``.driver``, ``.database``).
        art: the artifacts.
        model: the model uid.
        rows: class index -> the loader's :class:`GraphRows` of that class.
        atlas: the atlas rows per statement (``neurflow.ingest.graph.atlas.atlas_rows``).
        planted: the bias properties set per group uid (``biased_top`` is the planted
            most biased group).
        evaluated: the eval properties set per class uid.
    """

    conn: object
    art: Artifacts
    model: str
    rows: dict
    atlas: dict
    planted: dict = field(default_factory=dict)
    biased_top: str = ""
    evaluated: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # class index -> ClassLabels (`neurflow label`, annotations)

    def class_uid(self, index: int) -> str:
        from neurflow.ingest.graph.schema import class_uid

        return class_uid(self.model, index)

    def run(self, name: str, **params):
        from neurflow.queries import run_query

        return run_query(self.conn.driver, name, params, database=self.conn.database)


def _tiny_cnn():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 12, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(12, 16, 3, padding=1),
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(16, 16, 3, padding=1),
            relu3=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(16, 5),
        )
    ).double()


@pytest.fixture(scope="session")
def query_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Compute and save the circuits of 3 classes (about 5 s on 2 CPU cores)."""
    import numpy as np
    import torch
    from PIL import Image

    from neurflow import CircuitConfig, build_circuit, load_circuit, save_circuit
    from neurflow.ingest.pipeline import RUN_FILE, artifact_dir

    root = tmp_path_factory.mktemp("query_artifacts")
    model = _tiny_cnn()
    config = CircuitConfig(tau=5, k=12, steps=4, scales=(1.0, 0.5), n_exemplars=4, max_semantic_groups=3, max_neuron_groups=4, batch_size=64, ig_batch=256)
    gen = torch.Generator().manual_seed(1)
    dirs: dict[int, Path] = {}
    circuits = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index, name in CLASSES:
            images = torch.rand(6, 3, 16, 16, generator=gen, dtype=torch.float64)
            ids = [f"{name}/{i:03d}.png" for i in range(len(images))]
            circuit = build_circuit(model, images, index, LAYERS, config, model_name=MODEL_NAME, class_name=name, image_ids=ids)
            directory = artifact_dir(root, MODEL_NAME, index, name)
            save_circuit(circuit, directory)
            # what `neurflow compute` adds: exemplar thumbnails and the run record
            thumbs = directory / "thumbs"
            thumbs.mkdir()
            exemplars = {p for sg in circuit.semantic_groups for p in sg.exemplar_ids} | {p for g in circuit.groups for p in g.exemplar_ids}
            for p in sorted(exemplars):
                pixel = np.full((8, 8, 3), (p * 37) % 256, dtype=np.uint8)
                Image.fromarray(pixel).save(thumbs / f"p{p}.png")
            run = {"uid": f"run-20250101T00000{index}-test{index:04d}", "started": f"2025-01-01T00:00:0{index}Z",
                   "finished": f"2025-01-01T00:01:0{index}Z", "seconds": 60.0 + index, "device": "cpu"}
            (directory / RUN_FILE).write_text(json.dumps(run))
            dirs[index] = directory
            circuits[index] = load_circuit(directory)
    finally:
        torch.set_num_threads(threads)
    return Artifacts(root, dirs, circuits)


def _write(conn, query: str, **params) -> None:
    from neurflow.ingest.graph.writer import run_write

    run_write(conn.driver, conn.database, query, **params)


#: The concepts of the synthetic annotations of the query graph's images (label maps).
LABEL_CONCEPTS = ("bee", "fish", "kite", "flowers", "sky")


def write_annotations(root: Path, art: Artifacts) -> Path:
    """Label maps for the artifacts' 16x16 images, in the documented annotation format: every
    image is mostly 'flowers'; every third has its class's own concept on the right half, the
    next one 'sky' on the top half."""
    import numpy as np
    from PIL import Image

    (root / "concepts.json").write_text(json.dumps({"concepts": {str(i): c for i, c in enumerate(LABEL_CONCEPTS)}}))
    for index, name in CLASSES:
        for i, image_id in enumerate(art.circuits[index].image_ids):
            m = np.full((16, 16), LABEL_CONCEPTS.index("flowers"), dtype=np.uint8)
            if i % 3 == 0:
                m[:, 8:] = LABEL_CONCEPTS.index(name)
            elif i % 3 == 1:
                m[:8, :] = LABEL_CONCEPTS.index("sky")
            target = root / Path(image_id).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m, mode="L").save(target)
    return root


def label_artifacts(conn, art: Artifacts) -> dict:
    """What `neurflow label --labeller annotations` does: labels beside the artifacts, then in
    the graph, and the atlas concepts' labels. Returns class index -> the stored ClassLabels."""
    import tempfile

    from neurflow.ingest.labelling import AnnotationsLabeller, label_classes, read_annotations, read_class_labels, write_labels

    root = write_annotations(Path(tempfile.mkdtemp(prefix="annotations", dir=art.root)), art)
    from neurflow.ingest.labelling.concepts import label_concepts, write_concept_labels_to_graph

    labeller = AnnotationsLabeller(read_annotations(root))
    label_classes([art.dirs[i] for i, _ in CLASSES], labeller, force=True)
    write_labels(conn, [art.dirs[i] for i, _ in CLASSES])
    write_concept_labels_to_graph(conn, label_concepts([art.root], labeller, force=True))
    return {i: read_class_labels(art.dirs[i]) for i, _ in CLASSES}


@pytest.fixture(scope="module")
def loaded(bolt, query_artifacts: Artifacts) -> Loaded:
    """Wipe the session database, load and link the artifacts, plant debug/eval properties."""
    from neurflow.ingest.graph.atlas import link_artifacts
    from neurflow.ingest.graph.rows import circuit_rows
    from neurflow.ingest.graph.schema import model_uid
    from neurflow.ingest.pipeline import _run_props, load, read_artifact

    bolt.driver.execute_query("MATCH (n) DETACH DELETE n", database_=bolt.database)
    dirs = [query_artifacts.dirs[i] for i, _ in CLASSES]
    outcomes = load(bolt.driver, bolt.database, dirs, log=lambda _msg: None)
    assert [o.status for o in outcomes] == ["loaded"] * len(dirs), [o.message for o in outcomes]
    written = link_artifacts(bolt, [query_artifacts.root], quiet=True)
    any_circuit = query_artifacts.circuits[0]
    model = model_uid(any_circuit.model_name, any_circuit.model_fingerprint)
    rows = {}
    for index, directory in query_artifacts.dirs.items():
        circuit, run, thumbs = read_artifact(directory)
        rows[index] = circuit_rows(circuit, run=_run_props(run), artifact_dir=directory.resolve(), thumbnails=thumbs)
    state = Loaded(conn=bolt, art=query_artifacts, model=model, rows=rows, atlas=written[model])

    # What `neurflow debug` writes (ingest/debugging.py): one clearly most biased group in
    # "fish", a weaker biased one in "bee", one scored but not biased in "kite".
    def group_at(index: int, depth: int, which: int = 0) -> str:
        c = query_artifacts.circuits[index]
        groups = [g for g in c.groups if g.layer == c.layers[depth]]
        g = groups[which % len(groups)]
        return f"{state.class_uid(index)}/{g.layer}/g{g.index}"

    planted = {
        group_at(1, 2): {"bias_score": 0.93, "bias_rank": 1, "biased": True, "verdict": "spurious", "causes_fp": True, "spurious": True,
                         "effect_p": 0.0004, "q_value": 0.002, "fp_metric": 0.8, "tp_metric": 0.1, "mask_fp_flip": 0.7, "random_fp_flip": 0.1,
                         "mask_tp_flip": 0.02, "collateral_tp": 0.0, "confusers": ["bee 5/6", "kite 2/4"],
                         "mask_tp_drop": 0.05, "effect_z": 4.2, "shared_classes": 2},
        group_at(0, 1): {"bias_score": 0.41, "bias_rank": 1, "biased": True, "verdict": "spurious", "causes_fp": True, "spurious": True,
                         "effect_p": 0.004, "q_value": 0.01, "fp_metric": 0.5, "tp_metric": 0.3, "mask_fp_flip": 0.3, "random_fp_flip": 0.05,
                         "mask_tp_flip": 0.1, "collateral_tp": 0.05, "confusers": ["fish 3/10"],
                         "mask_tp_drop": 0.1, "effect_z": 2.0, "shared_classes": 1},
        group_at(2, 1): {"bias_score": 0.52, "bias_rank": 1, "biased": False, "verdict": "causes false positives; part of the class", "causes_fp": True,
                         "spurious": False, "effect_p": 0.001, "q_value": 0.004, "fp_metric": 0.2, "tp_metric": 0.3, "mask_fp_flip": 0.6,
                         "random_fp_flip": 0.1, "mask_tp_flip": 0.3, "collateral_tp": 0.2, "confusers": ["bee 9/11"],
                         "mask_tp_drop": 0.2, "effect_z": 0.5, "shared_classes": 0},
        group_at(2, 2): {"bias_score": 0.0, "bias_rank": 2, "biased": False, "verdict": "not significant", "causes_fp": False,
                         "effect_p": 0.7, "q_value": 0.7, "fp_metric": 0.2, "tp_metric": 0.3, "mask_fp_flip": 0.0, "random_fp_flip": 0.1,
                         "mask_tp_flip": 0.0, "collateral_tp": 0.0, "confusers": [], "mask_tp_drop": 0.0, "effect_z": -0.5, "shared_classes": 0},
    }
    _write(bolt, "UNWIND $rows AS r MATCH (g:NeuronGroup {uid: r.uid}) SET g += r.props",
           rows=[{"uid": uid, "props": props} for uid, props in planted.items()])
    _write(bolt, "UNWIND $uids AS u MATCH (c:Class {uid: u}) SET c.debugged_at = '2025-01-02T00:00:00Z', c.debug_verdict = 'biased', c.debug_alpha = 0.05, c.debug_n_fp = 12",
           uids=sorted({uid.rsplit("/", 2)[0] for uid in planted}))
    # What `neurflow evaluate` writes: "kite" not faithful, "bee" faithful, "fish" never evaluated.
    evaluated = {
        state.class_uid(2): {"eval_faithful": False, "eval_optimality_diff": -0.02, "eval_optimality_ci_low": -0.1, "eval_fidelity_mask_core": 0.6,
                             "eval_fidelity_mask_random": 0.55, "eval_correlation_spearman": 0.1, "evaluated_at": "2025-01-03T00:00:00Z"},
        state.class_uid(0): {"eval_faithful": True, "eval_optimality_diff": 0.3, "eval_optimality_ci_low": 0.2, "eval_fidelity_mask_core": 0.1,
                             "eval_fidelity_mask_random": 0.8, "eval_correlation_spearman": 0.7, "evaluated_at": "2025-01-03T00:00:00Z"},
    }
    _write(bolt, "UNWIND $rows AS r MATCH (c:Class {uid: r.uid}) SET c += r.props", rows=[{"uid": u, "props": p} for u, p in evaluated.items()])
    state.planted = planted
    state.biased_top = group_at(1, 2)
    state.evaluated = evaluated
    state.labels = label_artifacts(bolt, query_artifacts)
    return state
