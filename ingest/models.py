"""Resolve ``--model`` / ``--weights`` / preprocessing options into a ready classifier.

What a model gets by default:

* a torchvision model with torchvision weights (``--weights IMAGENET1K_V2``, ``DEFAULT``):
  the weights' own transforms (resize, centre crop, mean/std) and class names. Weights are
  downloaded by torchvision only in this case, i.e. only when the user asks for them;
* a torchvision model without weights, a ``file.py:factory`` model or a bare state_dict:
  resize the shorter side to ``input_size / 0.875`` then centre-crop ``input_size``
  (default 224) and ImageNet mean/std, unless ``--mean/--std`` or ``--no-normalize`` say
  otherwise (``--no-normalize`` for models that normalise inside ``forward``). Class names
  come from the data folders;
* ``demo``: the built-in demo CNN, trained locally and cached, with its own statistics.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neurflow.presets import LAYER_PRESETS

from .errors import InputError
from .preprocess import Preprocess, parse_resize

__all__ = ["ModelSpec", "Preprocess", "load_model", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """A loaded classifier and everything the pipeline needs to know about it.

    Attributes:
        name: the model's name in artifacts and in the graph.
        module: the classifier, in eval mode.
        layers: the preset layer list (logit first), or None when the user must give one.
        preprocess: image preprocessing.
        categories: class names from the weights' metadata, if any.
        weights: a description of the weights (for provenance).
    """

    name: str
    module: nn.Module
    layers: tuple[str, ...] | None
    preprocess: Preprocess
    categories: tuple[str, ...] | None
    weights: str


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _load_factory(spec: str) -> nn.Module:
    path_str, _, factory = spec.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"model file '{path}' does not exist (expected path/to/file.py:factory)")
    module_name = f"_neurflow_user_model_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"cannot import '{path}' as a Python module")
    mod = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = mod
    try:
        loader_spec.loader.exec_module(mod)
    except Exception as exc:
        raise InputError(f"importing '{path}' failed: {exc}") from exc
    fn = getattr(mod, factory, None)
    if fn is None or not callable(fn):
        raise InputError(f"'{path}' has no callable '{factory}'")
    model = fn()
    if not isinstance(model, nn.Module):
        raise InputError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_state_dict(model: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read weights file '{path}': {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise InputError(f"weights file '{path}' does not fit the model: {' '.join(first)}") from exc


def load_model(
    model: str,
    weights: str | None = None,
    *,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    normalize: bool = True,
    demo_root: Path | None = None,
    resize: str | None = None,
) -> ModelSpec:
    """Build the classifier named by ``model`` with ``weights``.

    Args:
        model: ``demo``, a torchvision classification model name (``resnet50``), or
            ``path/to/file.py:factory`` (a zero-argument function returning the module).
        weights: a torchvision weights name of that model (``IMAGENET1K_V2``, ``DEFAULT``),
            or a path to a state_dict file; None for the model's own initialisation.
        input_size, mean, std, normalize: preprocessing overrides (see module docstring).
        resize: the resize policy (``shorter:N``, ``exact``, ``none``; see
            :mod:`neurflow.ingest.preprocess`); None keeps the model's default.
        demo_root: where the demo world and model live (for ``model == "demo"``).

    Raises:
        InputError: unknown model or weights (with close matches), unreadable files, a
            state_dict that does not fit.
    """
    categories: tuple[str, ...] | None = None
    pre_resize = pre_size = None
    pre_mean, pre_std = IMAGENET_MEAN, IMAGENET_STD
    interpolation = "bilinear"
    parsed = parse_resize(resize)  # validated before anything is built
    layers: tuple[str, ...] | None = None
    weights_desc = "initialisation"

    if model == "demo":
        from .demo import model as demo_model

        if demo_root is None:
            raise InputError("the demo model needs a demo root directory")
        state = demo_root / "model.pt"
        if weights is None:
            if not state.is_file():
                raise InputError(f"the demo model is not trained yet ({state} is missing); run 'neurflow demo' or 'make demo'")
            weights = str(state)
        module = demo_model.build_model(demo_model.num_classes_of(Path(weights)) if Path(weights).is_file() else 5)
        layers = tuple(demo_model.DEMO_LAYERS)
        pre_mean, pre_std = tuple(demo_model.DEMO_MEAN), tuple(demo_model.DEMO_STD)
        pre_size = pre_resize = 64
        name = "demo"
    elif ":" in model and model.rpartition(":")[0].endswith(".py"):
        module = _load_factory(model)
        name = Path(model.rpartition(":")[0]).stem + "." + model.rpartition(":")[2]
    else:
        import torchvision

        names = _torchvision_names()
        if model not in names:
            close = difflib.get_close_matches(model, names, n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise InputError(f"unknown model '{model}'.{hint} Use a torchvision classification model name, 'demo', or path/to/file.py:factory")
        name = model
        layers = LAYER_PRESETS.get(model)
        tv_weights = None
        if weights is not None and not Path(weights).exists():
            enum = torchvision.models.get_model_weights(model)
            try:
                tv_weights = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
            except KeyError:
                choices = ["DEFAULT", *[w.name for w in enum]]
                raise InputError(f"unknown weights '{weights}' for {model}; choose one of {', '.join(choices)} or give a state_dict path") from None
        kwargs = {"init_weights": False, "aux_logits": False} if model in ("googlenet", "inception_v3") and tv_weights is None else {}
        module = _download_guard(model, tv_weights, lambda: torchvision.models.get_model(model, weights=tv_weights, **kwargs))
        if tv_weights is not None:
            weights_desc = f"torchvision:{tv_weights}"
            weights = None
            categories = tuple(tv_weights.meta.get("categories", ())) or None
            tf = tv_weights.transforms()
            pre_size, pre_resize = int(tf.crop_size[0]), int(tf.resize_size[0])
            pre_mean, pre_std = tuple(tf.mean), tuple(tf.std)
            interpolation = str(getattr(tf.interpolation, "value", tf.interpolation))  # e.g. "bilinear", "bicubic"
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"weights '{weights}' is neither a file nor a torchvision weights name")
        _load_state_dict(module, path)
        weights_desc = f"file:{path.name}"

    size = int(input_size or pre_size or 224)
    side = int(pre_resize if (pre_resize and not input_size) else round(size / 0.875))
    if model == "demo" and not input_size:
        side = size
    policy = "shorter"
    if parsed is not None:
        policy = parsed[0]
        if parsed[1] is not None:
            resize_to = parsed[1]
            if resize_to < size:
                raise InputError(f"--resize shorter:{resize_to} is smaller than the input size {size}")
            side = resize_to
    if policy != "shorter":
        side = size
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != len(std):
            raise InputError("--mean and --std must be given together, with one value per channel")
        pre_mean, pre_std = tuple(mean), tuple(std)
    if not normalize:
        pre_mean = pre_std = None  # type: ignore[assignment]
    module.eval()
    return ModelSpec(name=name, module=module, layers=layers, preprocess=Preprocess(size, side, pre_mean, pre_std, policy, interpolation), categories=categories, weights=weights_desc)


def _download_guard(model: str, tv_weights, build):
    """Build a torchvision model; a weights download that cannot reach its server becomes an
    InputError naming the file, where torchvision's cache expects it, and the offline way."""
    import urllib.error

    try:
        return build()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        if tv_weights is None or isinstance(exc, FileNotFoundError):
            raise
        import os

        import torch.hub

        url = tv_weights.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise InputError(
            f"could not download the {model} weights {tv_weights} from {url} ({reason}). "
            f"On a machine without internet, copy that file to {cached} (torchvision's cache; TORCH_HOME moves it), "
            f"or pass --weights path/to/state_dict.pt"
        ) from None
