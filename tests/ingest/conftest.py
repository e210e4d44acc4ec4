"""Fixtures for ingest tests: a tiny model file, a small ImageFolder tree, computed artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = str(Path(__file__).with_name("tiny_model.py")) + ":make"
CLASSES = ("alpha", "beta", "gamma")
COMPUTE_ARGS = ["--model", TINY, "--layers", "fc,c3,c2", "--input-size", "32", "--include-misclassified",
                "--tau", "4", "--k", "10", "--steps", "8", "--quiet"]


def make_image_folder(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Path:
    """Artifacts of the three tiny classes, computed once per session through the CLI."""
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    out = tmp_path_factory.mktemp("artifacts")
    result = CliRunner().invoke(main, ["compute", "--data", str(image_folder), "--out", str(out), *COMPUTE_ARGS])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def class_dirs(artifacts: Path, tmp_path: Path) -> list[Path]:
    """A private copy of the tiny model's class artifacts (40x48 images, 32x32 model input),
    for tests that write beside them (labels)."""
    import shutil

    from neurflow.ingest.pipeline import find_artifacts

    out = []
    for d in find_artifacts([artifacts]):
        target = tmp_path / "artifacts" / d.parent.name / d.name
        shutil.copytree(d, target)
        out.append(target)
    return out
