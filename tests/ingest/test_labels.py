"""Concept labels (issue #14): the annotation format and its geometry, the annotations
labeller's rules, the label store tied to the artifact's checksum (restored on reload,
dropped when the artifact changes), and `neurflow label` with the annotations labeller."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from neurflow.ingest.cli import main
from neurflow.ingest.errors import InputError
from neurflow.ingest.labelling import (
    LABELS_FILE,
    AnnotationsLabeller,
    artifact_checksum,
    class_job,
    label_classes,
    read_annotations,
    read_class_labels,
    read_labels,
)

from .conftest import CLASSES

CONCEPTS = ("grass", "sky", *CLASSES)


def write_maps(root: Path, image_folder: Path, draw, class_concepts: dict | None = None) -> Path:
    """One label map per image of the tiny data folder (40 high, 48 wide): ``draw(class name,
    index) -> (40, 48) array of concept ids``."""
    doc = {"concepts": {str(i): c for i, c in enumerate(CONCEPTS)}}
    if class_concepts is not None:
        doc["class_concepts"] = class_concepts
    root.mkdir(parents=True, exist_ok=True)
    (root / "concepts.json").write_text(json.dumps(doc))
    for name in CLASSES:
        for i, f in enumerate(sorted((image_folder / name).glob("*.png"))):
            (root / name).mkdir(exist_ok=True)
            Image.fromarray(draw(name, i).astype(np.uint8), mode="L").save(root / name / f.name)
    return root


def test_label_maps_follow_the_image_geometry(class_dirs, image_folder, tmp_path):
    """A map of the original 48x40 image goes through the same resize + centre crop as the image."""
    cols = np.tile(np.arange(48) // 24, (40, 1))  # left half 0 (grass), right half 1 (sky)
    ann = read_annotations(write_maps(tmp_path / "ann", image_folder, lambda n, i: cols))
    job = class_job(class_dirs[0])
    assert job.preprocess["input_size"] == 32
    m = ann.label_map(job.circuit.image_ids[0], job.preprocess, 32)
    assert m.shape == (32, 32)
    assert set(np.unique(m[:, :15])) == {0} and set(np.unique(m[:, 17:])) == {1}  # the split stays in the middle


def test_annotations_labeller_rules(class_dirs, image_folder, tmp_path):
    grass = read_annotations(write_maps(tmp_path / "grass", image_folder, lambda n, i: np.zeros((40, 48))))
    (outcome,) = label_classes([class_dirs[0]], AnnotationsLabeller(grass))
    job = class_job(class_dirs[0])
    labels = read_labels(class_dirs[0])
    assert outcome.status == "labelled" and set(labels) == {(g.layer, g.index) for g in job.groups}
    for g in job.groups:
        lab = labels[(g.layer, g.index)]
        if g.depth == 0:  # the root group is the class output, named after the class
            assert (lab.label, lab.part_of_class, lab.score, lab.runner_up) == ("alpha", True, 0.0, "grass")
        else:  # every pixel is grass: a context concept of every class
            assert (lab.label, lab.score, lab.part_of_class, lab.runner_up) == ("grass", 1.0, False, None)
    assert set(read_class_labels(class_dirs[0]).relations) == set(job.edges)

    # left half the class's own concept, right half sky: the best concept's share decides
    def halves(name, i):
        m = np.full((40, 48), CONCEPTS.index(name))
        m[:, 24:] = CONCEPTS.index("sky")
        return m

    ann = read_annotations(write_maps(tmp_path / "halves", image_folder, halves, {"alpha": ["alpha"], "beta": ["beta"]}))
    (outcome,) = label_classes([class_dirs[0]], AnnotationsLabeller(ann, threshold=0.99), force=True)
    from neurflow.ingest.labelling import group_concept_shares

    for g in job.groups:
        if g.depth == 0:
            continue
        shares = group_concept_shares(ann, job, g.image_ids, g.boxes)
        lab = outcome.labels.groups[(g.layer, g.index)]
        best = min(shares, key=lambda k: (-shares[k], k))  # ties go to the first name
        assert lab.score == pytest.approx(shares[best], abs=1e-4)
        if shares[best] >= 0.99:
            assert lab.label == best and lab.part_of_class == (best == "alpha")
        else:
            assert lab.part_of_class is None and lab.label.startswith(best + " + ") and "mixed" in lab.description
    assert outcome.labels.source == "annotations:mixed<0.99"


def test_bad_annotations_are_clear_errors(tmp_path, class_dirs):
    with pytest.raises(InputError, match="missing concepts.json"):
        read_annotations(tmp_path)
    (tmp_path / "concepts.json").write_text('{"names": []}')
    with pytest.raises(InputError, match="not an annotation concept file"):
        read_annotations(tmp_path)
    (tmp_path / "concepts.json").write_text('{"concepts": {"0": "a"}, "class_concepts": {"alpha": ["b"]}}')
    with pytest.raises(InputError, match="unknown concepts"):
        read_annotations(tmp_path)
    (tmp_path / "concepts.json").write_text('{"concepts": {"0": "a"}}')
    with pytest.raises(InputError, match="no label map for image"):  # maps missing
        label_classes([class_dirs[0]], AnnotationsLabeller(read_annotations(tmp_path)))
    assert not (class_dirs[0] / LABELS_FILE).exists()


def _graph_labels(conn) -> dict:
    records, _, _ = conn.driver.execute_query(
        "MATCH (g:NeuronGroup) RETURN g.uid AS uid, g.label AS label, g.caption AS caption, g.layer AS layer, g.index AS index", database_=conn.database
    )
    return {r["uid"]: (r["label"], r["caption"], r["layer"], r["index"]) for r in records}


def test_labels_survive_a_reload_and_are_dropped_when_the_artifact_changes(graph, class_dirs, image_folder, tmp_path):
    from neurflow.ingest.labelling import write_labels
    from neurflow.ingest.pipeline import load

    ann = read_annotations(write_maps(tmp_path / "ann", image_folder, lambda n, i: np.where(np.arange(48) < 30, CONCEPTS.index(n), 1)[None, :].repeat(40, 0)))
    label_classes(class_dirs, AnnotationsLabeller(ann))
    load(graph.driver, graph.database, class_dirs, log=lambda _m: None)  # the loader restores stored labels by itself
    first = _graph_labels(graph)
    assert first and all(label is not None and caption == label for label, caption, _, _ in first.values())
    write_labels(graph, class_dirs)
    load(graph.driver, graph.database, class_dirs, log=lambda _m: None)  # reload: same artifact, same labels
    assert _graph_labels(graph) == first

    # the artifact changes (here: circuit.json rewritten, same content, other bytes): labels dropped
    d = class_dirs[0]
    before = artifact_checksum(d)
    doc = json.loads((d / "circuit.json").read_text())
    (d / "circuit.json").write_text(json.dumps(doc, indent=3))
    assert artifact_checksum(d) != before
    assert read_labels(d) == {} and read_class_labels(d) is None and (d / LABELS_FILE).exists()
    load(graph.driver, graph.database, [d], log=lambda _m: None)
    after = _graph_labels(graph)
    assert any("/c0/" in uid for uid in after) and any("/c0/" not in uid for uid in after)
    for uid, (label, caption, layer, index) in after.items():
        if "/c0/" in uid:
            assert label is None and caption == f"{layer} g{index}"
        else:
            assert label == first[uid][0]
    # labelling again makes labels for the new checksum
    (outcome,) = label_classes([d], AnnotationsLabeller(ann))
    assert outcome.status == "labelled" and read_class_labels(d).artifact_checksum == artifact_checksum(d)


def test_label_command_with_annotations(graph, class_dirs, image_folder, tmp_path):
    from neurflow.ingest.labelling import write_labels
    from neurflow.ingest.pipeline import load

    ann0 = write_maps(tmp_path / "ann0", image_folder, lambda n, i: np.zeros((40, 48)))
    label_classes([class_dirs[0]], AnnotationsLabeller(read_annotations(ann0)))
    said: list[str] = []
    assert list(write_labels(graph, [class_dirs[0]], log=said.append).values()) == [0]  # not loaded: nothing matched
    assert "not in the graph (load it first" in said[0]
    (class_dirs[0] / LABELS_FILE).unlink()
    load(graph.driver, graph.database, class_dirs, log=lambda _m: None)
    ann = write_maps(tmp_path / "ann", image_folder, lambda n, i: np.full((40, 48), CONCEPTS.index(n)))
    out = class_dirs[0].parent.parent
    args = ["label", "--labeller", "annotations", "--annotations", str(ann), "--out", str(out), "--classes", "alpha,2"]
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["class_name"] for c in doc] == ["alpha", "gamma"] and all(c["status"] == "labelled" for c in doc)
    for c in doc:
        assert all(g["label"] == c["class_name"] and g["part_of_class"] is True and g["group"].startswith(c["class"] + "/") for g in c["groups"])
        assert c["relations"] and all(r["relation"] for r in c["relations"])
    in_graph = _graph_labels(graph)
    assert {uid: v[0] for uid, v in in_graph.items() if v[0] is not None} == {g["group"]: g["label"] for c in doc for g in c["groups"]}
    again = CliRunner().invoke(main, args)  # a re-run reuses the stored labels
    assert again.exit_code == 0 and again.stdout.count(": cached,") == 2

    missing = CliRunner().invoke(main, ["label", "--labeller", "annotations", "--out", str(out)])
    assert missing.exit_code == 2 and "needs --annotations" in missing.output
    unknown = CliRunner().invoke(main, [*args[:-1], "nosuch"])
    assert unknown.exit_code == 2 and "class(es) nosuch" in unknown.output
    bad_layer = CliRunner().invoke(main, [*args, "--layers", "c9"])
    assert bad_layer.exit_code == 2 and "layer(s) c9 are not in the circuit of 'alpha'" in bad_layer.output
    only = CliRunner().invoke(main, [*args, "--layers", "c2", "--force", "--format", "json"])
    assert only.exit_code == 0 and {g["group"].rsplit("/", 2)[1] for g in json.loads(only.stdout)[0]["groups"]} == {"c2", "c3", "fc"}  # other layers kept
    no_model = CliRunner().invoke(main, ["label", "--labeller", "openai", "--out", str(out)])
    assert no_model.exit_code == 2 and "needs --model" in no_model.output


def test_label_command_does_not_import_torch_for_help():
    import subprocess
    import sys

    code = "import sys; from click.testing import CliRunner; from neurflow.ingest.cli import main; r = CliRunner().invoke(main, ['label', '--help']); assert r.exit_code == 0; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_concept_labels_are_restored_by_link_and_dropped_when_an_artifact_changes(graph, class_dirs, image_folder, tmp_path):
    from neurflow.ingest.graph.atlas import link_artifacts
    from neurflow.ingest.labelling.concepts import label_concepts, read_concept_labels
    from neurflow.ingest.pipeline import load

    ann = read_annotations(write_maps(tmp_path / "ann", image_folder, lambda n, i: np.where(np.arange(48) < 30, CONCEPTS.index(n), 1)[None, :].repeat(40, 0)))
    out = class_dirs[0].parent.parent
    (labels,) = label_concepts([out], AnnotationsLabeller(ann)).values()
    assert labels and all(lab.part_of_class is None and "used by" in lab.description for lab in labels.values())
    load(graph.driver, graph.database, class_dirs, log=lambda _m: None)
    link_artifacts(graph, [out], quiet=True)

    def concepts():
        records, _, _ = graph.driver.execute_query("MATCH (k:Concept) RETURN k.uid AS uid, k.label AS label, k.caption AS caption", database_=graph.database)
        return {r["uid"]: (r["label"], r["caption"]) for r in records}

    assert concepts() == {uid: (lab.label, lab.label) for uid, lab in labels.items()}
    doc = json.loads((class_dirs[1] / "circuit.json").read_text())
    (class_dirs[1] / "circuit.json").write_text(json.dumps(doc, indent=3))  # another version of one artifact
    assert read_concept_labels(class_dirs) == {}
    link_artifacts(graph, [out], quiet=True)
    after = concepts()
    assert after and all(label is None and caption == uid.split("/", 1)[1].replace("/", " ") for uid, (label, caption) in after.items())
