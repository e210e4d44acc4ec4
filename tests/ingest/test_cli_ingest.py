"""`neurflow compute` end to end on a tiny model, and every bad input's message and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurflow import load_circuit
from neurflow.ingest.cli import main
from neurflow.ingest.pipeline import RUN_FILE, find_artifacts

from .conftest import COMPUTE_ARGS, TINY, make_image_folder


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_compute_writes_complete_artifacts_and_resumes(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "arts"
    first = run("compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS)
    assert first.exit_code == 0, first.output
    assert "3 class(es) computed" in first.output
    dirs = find_artifacts([out])
    assert [d.name for d in dirs] == ["0000-alpha", "0001-beta", "0002-gamma"]
    for d in dirs:
        run_doc = json.loads((d / RUN_FILE).read_text())
        assert run_doc["n_images_used"] == 4
        assert (d / "thumbs").is_dir() and any((d / "thumbs").iterdir())
        assert load_circuit(d).config.tau == 4
    again = run("compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS)
    assert "0 class(es) computed, 3 up to date" in again.output
    # other settings -> recomputed, not skipped
    changed = run("compute", "--data", str(image_folder), "--out", str(out), *[a if a != "4" else "3" for a in COMPUTE_ARGS], "--classes", "beta")
    assert "1 class(es) computed" in changed.output
    assert load_circuit(out / "tiny_model.make" / "0001-beta").config.tau == 3
    # speed-only settings leave artifacts up to date; precision changes results, so it recomputes
    speed = run("compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS, "--classes", "alpha", "--batch-size", "3", "--ig-batch", "7", "--map-cache-mb", "0")
    assert "0 class(es) computed, 1 up to date" in speed.output, speed.output
    bf16 = run("compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS, "--classes", "alpha", "--precision", "bfloat16")
    assert "1 class(es) computed" in bf16.output, bf16.output
    assert load_circuit(out / "tiny_model.make" / "0000-alpha").config.precision == "bfloat16"


def test_killed_compute_loses_at_most_the_class_in_flight(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "arts"
    assert run("compute", "--data", str(image_folder), "--out", str(out), "--classes", "alpha", *COMPUTE_ARGS).exit_code == 0
    # simulate a kill in the middle of beta: a half-written .partial directory and no run.json
    half = out / "tiny_model.make" / "0001-beta.partial"
    half.mkdir(parents=True)
    (half / "arrays.npz").write_bytes(b"PK\x03")
    result = run("compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS)
    assert "2 class(es) computed, 1 up to date" in result.output
    assert len(find_artifacts([out])) == 3


def test_corrupt_images_are_skipped_counted_and_reported(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=2)
    (data / "beta" / "broken.jpg").write_bytes(b"definitely not a jpeg")
    result = run("compute", "--data", str(data), "--out", str(tmp_path / "o"), "--classes", "beta", *COMPUTE_ARGS)
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable file(s): beta/broken.jpg" in result.output
    run_doc = json.loads((tmp_path / "o" / "tiny_model.make" / "0001-beta" / RUN_FILE).read_text())
    assert run_doc["n_skipped_files"] == 1


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--data", "{missing}"], "does not exist", 2),
        (["--data", "{empty}"], "has no class folders", 2),
        (["--data", "{data}", "--classes", "betta"], "Did you mean: beta", 2),
        (["--data", "{data}", "--classes", "7"], "has no image folder", 2),
        (["--data", "{data}", "--layers", "fc,c33"], "Did you mean: c3", 2),
        (["--data", "{data}", "--layers", "fc,c3,fc"], "duplicate layer", 2),
        (["--data", "{data}", "--model", "resnet5"], "Did you mean: resnet50", 2),
        (["--data", "{data}", "--model", "nofile.py:make"], "does not exist", 2),
        (["--data", "{data}", "--tau", "0"], "tau must be >= 1", 2),
        (["--data", "{data}", "--weights", "{data}/alpha/0.png"], "cannot read weights file", 2),
        (["--data", "{data}", "--mean", "0.5,0.5"], "--mean and --std must be given together", 2),
        (["--data", "{data}", "--model", "demo", "--demo-root", "{missing}"], "the demo model is not trained yet", 2),
        (["--data", "{data}", "--precision", "float16"], "Invalid value for '--precision'", 2),
        (["--data", "{data}", "--map-cache-mb", "-1"], "map_cache_mb must be >= 0", 2),
    ],
)
def test_bad_input_messages(tmp_path: Path, image_folder: Path, args: list[str], message: str, code: int) -> None:
    (tmp_path / "empty").mkdir()
    subst = {"{missing}": str(tmp_path / "nope"), "{empty}": str(tmp_path / "empty"), "{data}": str(image_folder)}
    args = [next((a.replace(k, v) for k, v in subst.items() if k in a), a) for a in args]
    base = ["--model", TINY, "--layers", "fc,c3,c2", "--input-size", "32", "--quiet", "--out", str(tmp_path / "o")]
    # later options win in click, so the case's own --model/--layers override the base
    result = run("compute", *base, *args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_class_without_correct_predictions(tmp_path: Path, image_folder: Path) -> None:
    args = [a for a in COMPUTE_ARGS if a != "--include-misclassified"]
    result = run("compute", "--data", str(image_folder), "--out", str(tmp_path / "o"), *args)
    # the random tiny model predicts one class for everything: the others have no true positive
    assert result.exit_code == 1
    assert "has no image the model classifies as" in result.output
    assert "--include-misclassified" in result.output


def test_help_does_not_import_torch() -> None:
    code = "import sys; from neurflow.ingest.cli import main; sys.argv=['neurflow','--help']\ntry:\n main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("False"), done.stdout + done.stderr


def test_unreachable_weights_download_is_a_message_not_a_traceback(tmp_path, monkeypatch) -> None:
    """Network unreachable: the download of torchvision weights fails; the command exits 2 and
    says which file, where the cache expects it, and that --weights works offline."""
    import socket
    import urllib.error
    import urllib.request

    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    def refuse(*args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse, raising=False)
    import torch.hub

    monkeypatch.setattr(torch.hub, "urlopen", refuse, raising=False)
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    result = CliRunner().invoke(main, ["compute", "--model", "resnet18", "--weights", "IMAGENET1K_V1", "--data", str(data.parent),
                                       "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "could not download the resnet18 weights" in result.output
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in result.output
    assert "--weights path/to/state_dict.pt" in result.output and "Traceback" not in result.output
