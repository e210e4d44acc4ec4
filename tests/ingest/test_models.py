"""The model registry and the preprocessing policies (ingest/models.py, ingest/preprocess.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from neurflow.errors import InputError
from neurflow.ingest import models
from neurflow.ingest.cli import main
from neurflow.ingest.models import Built, ModelFamily, load_model, model_families, register_model_family
from neurflow.ingest.preprocess import Preprocess, fit, parse_resize

from .conftest import COMPUTE_ARGS


def test_builtin_families_and_the_unknown_model_message():
    assert [f.name for f in model_families()] == ["demo", "file.py:factory", "torchvision"]
    with pytest.raises(InputError, match=r"unknown model 'resnet5'\. Did you mean: resnet50.*Registered model families: demo, file.py:factory, torchvision"):
        load_model("resnet5")


def test_a_registered_family_is_loaded_like_the_builtin_ones(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(models, "_REGISTRY", list(model_families()))
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    register_model_family(ModelFamily("mine", lambda m: m.startswith("mine-"), lambda m, w, r: Built(net, m, ("1",), input_size=8, mean=None, std=None)))
    spec = load_model("mine-small")
    assert spec.name == "mine-small" and spec.module is net and spec.layers == ("1",)
    assert spec.preprocess == Preprocess(8, round(8 / 0.875), None, None)
    # a state_dict file goes through the generic loader and is recorded by path
    state = {k: v + 1 for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    spec = load_model("mine-small", str(tmp_path / "w.pt"))
    assert spec.weights == "file:w.pt" and spec.weights_file == (tmp_path / "w.pt").absolute()
    assert torch.equal(spec.module[1].bias, state["1.bias"])


def test_torchvision_family_without_weights_keeps_the_generic_preprocessing():
    spec = load_model("resnet18", input_size=64, resize="shorter:80")
    assert spec.preprocess == Preprocess(64, 80, models.IMAGENET_MEAN, models.IMAGENET_STD, "shorter", "bilinear")
    with pytest.raises(InputError, match="--resize shorter:50 is smaller than the input size 64"):
        load_model("resnet18", input_size=64, resize="shorter:50")


@pytest.mark.parametrize("value, expected", [(None, None), ("shorter", ("shorter", None)), ("shorter:256", ("shorter", 256)), ("exact", ("exact", None)), ("none", ("none", None))])
def test_parse_resize(value, expected):
    assert parse_resize(value) == expected


@pytest.mark.parametrize("value", ["crop", "exact:5", "shorter:x", "shorter:0"])
def test_parse_resize_rejects(value):
    with pytest.raises(InputError, match="--resize"):
        parse_resize(value)


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_fit_shorter_equals_torchvision_resize_and_centre_crop():
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    im = _image(60, 45)
    for interp, mode in (("bilinear", InterpolationMode.BILINEAR), ("bicubic", InterpolationMode.BICUBIC)):
        ours = np.asarray(fit(im, Preprocess(32, 37, None, None, "shorter", interp)))
        theirs = np.asarray(CenterCrop(32)(Resize(37, interpolation=mode)(im)))
        assert ours.shape == theirs.shape == (32, 32, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1  # PIL rounding of the intermediate size


def test_fit_none_feeds_prepared_pixels_as_they_are_and_exact_keeps_everything():
    im = _image(32, 32)
    assert np.array_equal(np.asarray(fit(im, Preprocess(32, 32, None, None, "none"))), np.asarray(im))
    big = _image(40, 36)
    assert np.array_equal(np.asarray(fit(big, Preprocess(32, 32, None, None, "none"))), np.asarray(big)[2:34, 4:36])
    with pytest.raises(ValueError, match="smaller than the input size"):
        fit(_image(20, 40), Preprocess(32, 32, None, None, "none"))
    assert np.array_equal(np.asarray(fit(big, Preprocess(32, 32, None, None, "exact"))), np.asarray(big.resize((32, 32), Image.BILINEAR)))
    assert Preprocess.from_record(Preprocess(32, 32, (0.5,), (0.2,), "exact", "bicubic").describe()) == Preprocess(32, 32, (0.5,), (0.2,), "exact", "bicubic")
    assert "policy" not in Preprocess(32, 36, None, None).describe()  # old artifacts' settings keys unchanged


def test_resize_policy_is_recorded_and_makes_another_artifact(image_folder: Path, tmp_path: Path):
    out = tmp_path / "a"
    args = ["compute", "--data", str(image_folder), "--out", str(out), "--classes", "alpha", *COMPUTE_ARGS]
    assert CliRunner().invoke(main, args).exit_code == 0
    run_file = next(out.rglob("run.json"))
    assert "policy" not in json.loads(json.loads(run_file.read_text())["preprocess"])
    result = CliRunner().invoke(main, [*args, "--resize", "none"])
    assert result.exit_code == 0 and "1 class(es) computed" in result.output  # a new policy: not up to date
    run = json.loads(run_file.read_text())
    assert json.loads(run["preprocess"])["policy"] == "none" and run["data_root"] == str(image_folder.absolute())
    result = CliRunner().invoke(main, [*args, "--resize", "bogus"])
    assert result.exit_code == 2 and "--resize must be shorter:N, exact or none" in result.output


def test_device_names(monkeypatch):
    from neurflow.ingest.session import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="--device cuda:1 was requested but no CUDA device is available"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # accepted (the option once refused it)
    with pytest.raises(InputError, match="--device cuda:2: this machine has 2 CUDA device"):
        resolve_device("cuda:2")
