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

Each of these is a :class:`ModelFamily` in one registry (:func:`register_model_family`);
the demo registers there like any other family, and so can a user's own.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neurflow.presets import LAYER_PRESETS

from .errors import InputError
from .preprocess import Preprocess, parse_resize

__all__ = ["ModelSpec", "Preprocess", "Built", "ModelFamily", "register_model_family", "model_families", "load_model", "IMAGENET_MEAN", "IMAGENET_STD"]

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
        weights_file: the absolute path of the state_dict file read, if any.
    """

    name: str
    module: nn.Module
    layers: tuple[str, ...] | None
    preprocess: Preprocess
    categories: tuple[str, ...] | None
    weights: str
    weights_file: Path | None = None


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


@dataclass
class Built:
    """What a model family builds: the module and its own defaults.

    Attributes:
        module: the classifier (weights loaded when the family consumed ``weights``).
        name: the model's name in artifacts and in the graph.
        layers: the preset layer list (logit first), or None.
        input_size / resize / mean / std / interpolation: default preprocessing (None: the
            generic defaults, 224 px, shorter side to size / 0.875, ImageNet statistics).
        categories: class names, if the weights carry them.
        weights_desc: provenance of the weights; None when ``weights`` is left to the
            generic state_dict loader.
        weights_consumed: the family used ``weights`` itself.
        weights_file: the state_dict file the family read (recorded as provenance).
    """

    module: nn.Module
    name: str
    layers: tuple[str, ...] | None = None
    input_size: int | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    interpolation: str = "bilinear"
    categories: tuple[str, ...] | None = None
    weights_desc: str | None = None
    weights_consumed: bool = False
    weights_file: Path | None = None


@dataclass(frozen=True)
class ModelFamily:
    """A kind of model ``--model`` can name: ``matches`` says whether a name is one of its
    models, ``build(name, weights, demo_root)`` builds it, ``names`` lists known names (for
    "did you mean" hints)."""

    name: str
    matches: Callable[[str], bool]
    build: Callable[[str, "str | None", "Path | None"], Built]
    names: Callable[[], list[str]] = list


_REGISTRY: list[ModelFamily] = []


def register_model_family(family: ModelFamily, *, first: bool = True) -> None:
    """Add a model family; families registered later are asked first unless ``first=False``."""
    _REGISTRY.insert(0, family) if first else _REGISTRY.append(family)


def model_families() -> list[ModelFamily]:
    """The registered families, in the order they are asked."""
    if not _REGISTRY:
        _register_builtin()
    return list(_REGISTRY)


def _build_factory(model: str, weights: str | None, demo_root: Path | None) -> Built:
    return Built(_load_factory(model), Path(model.rpartition(":")[0]).stem + "." + model.rpartition(":")[2])


def _build_torchvision(model: str, weights: str | None, demo_root: Path | None) -> Built:
    import torchvision

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
    built = Built(module, model, LAYER_PRESETS.get(model))
    if tv_weights is not None:  # the weights' own transforms, whole
        tf = tv_weights.transforms()
        built.input_size, built.resize = int(tf.crop_size[0]), int(tf.resize_size[0])
        built.mean, built.std = tuple(tf.mean), tuple(tf.std)
        built.interpolation = str(getattr(tf.interpolation, "value", tf.interpolation))
        built.categories = tuple(tv_weights.meta.get("categories", ())) or None
        built.weights_desc, built.weights_consumed = f"torchvision:{tv_weights}", True
    return built


def _register_builtin() -> None:
    from .demo.model import model_family as demo_family

    _REGISTRY.extend(
        [
            demo_family(),
            ModelFamily("file.py:factory", lambda m: ":" in m and m.rpartition(":")[0].endswith(".py"), _build_factory),
            ModelFamily("torchvision", lambda m: m in _torchvision_names(), _build_torchvision, _torchvision_names),
        ]
    )


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
    """Build the classifier named by ``model`` with ``weights``, through the model registry.

    Args:
        model: a name one of :func:`model_families` matches: ``demo``, a torchvision
            classification model name (``resnet50``), ``path/to/file.py:factory`` (a
            zero-argument function returning the module), or a registered family's model.
        weights: a torchvision weights name of that model (``IMAGENET1K_V2``, ``DEFAULT``),
            or a path to a state_dict file; None for the model's own initialisation.
        input_size, mean, std, normalize: preprocessing overrides (see module docstring).
        demo_root: where the demo world and model live (for ``model == "demo"``).
        resize: the resize policy (``shorter:N``, ``exact``, ``none``; see
            :mod:`neurflow.ingest.preprocess`); None keeps the model's default.

    Raises:
        InputError: unknown model or weights (with close matches), unreadable files, a
            state_dict that does not fit.
    """
    parsed = parse_resize(resize)  # validated before anything is built
    families = model_families()
    family = next((f for f in families if f.matches(model)), None)
    if family is None:
        known = [n for f in families for n in f.names()]
        close = difflib.get_close_matches(model, known, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        kinds = ", ".join(f.name for f in families)
        raise InputError(f"unknown model '{model}'.{hint} Registered model families: {kinds} (a torchvision classification model name, 'demo', or path/to/file.py:factory)")
    built = family.build(model, weights, demo_root)
    weights_desc = built.weights_desc or "initialisation"
    if weights is not None and not built.weights_consumed:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"weights '{weights}' is neither a file nor a torchvision weights name")
        _load_state_dict(built.module, path)
        weights_desc = f"file:{path.name}"
        built.weights_file = path

    size = int(input_size or built.input_size or 224)
    side = int(built.resize if (built.resize and not input_size) else round(size / 0.875))
    policy = "shorter"
    if parsed is not None:
        policy = parsed[0]
        if parsed[1] is not None:
            if parsed[1] < size:
                raise InputError(f"--resize shorter:{parsed[1]} is smaller than the input size {size}")
            side = parsed[1]
    if policy != "shorter":
        side = size
    pre_mean, pre_std = built.mean, built.std
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != len(std):
            raise InputError("--mean and --std must be given together, with one value per channel")
        pre_mean, pre_std = tuple(mean), tuple(std)
    if not normalize:
        pre_mean = pre_std = None
    built.module.eval()
    return ModelSpec(
        name=built.name,
        module=built.module,
        layers=built.layers,
        preprocess=Preprocess(size, side, pre_mean, pre_std, policy, built.interpolation),
        categories=built.categories,
        weights=weights_desc,
        weights_file=built.weights_file.absolute() if built.weights_file is not None else None,
    )


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
