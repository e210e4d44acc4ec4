"""The demo CNN: a small four-block convnet trained on the demo world, cached on disk.

Layer names are fixed by the module attributes (``block1`` ... ``block4``, ``pool``, ``fc``),
so the analysed layers (:data:`DEMO_LAYERS`) and torch.fx node names are stable::

    input  3x64x64, normalised with DEMO_MEAN / DEMO_STD (after scaling pixels to [0, 1])
    block1 conv3x3(3->16)-BN-ReLU-maxpool2   -> 16x32x32
    block2 conv3x3(16->32)-BN-ReLU-maxpool2  -> 32x16x16
    block3 conv3x3(32->64)-BN-ReLU-maxpool2  -> 64x8x8
    block4 conv3x3(64->64)-BN-ReLU           -> 64x8x8
    pool   adaptive average                  -> 64x1x1 (flattened in forward)
    fc     linear(64->5)                     -> class logits, in ImageFolder class order

Training (:func:`train_demo_model`) is deterministic on CPU for a given seed, torch build
and thread count; the weights are cached with a JSON sidecar and reused when the sidecar
matches. :func:`ensure_demo` is the one call ``neurflow demo`` needs.

With the defaults (world seed 0, training seed 0, 10 epochs; about 100 s on two CPU
cores) the model reaches 0.93 validation accuracy (bee 0.80, the other classes 0.92-1.0)
and has learnt the planted bias: 17.5% of the non-bee validation images on ``flowers``
are called ``bee``, against 0% on every other background (:func:`measure_planted_bias`).
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError
from .world import PlantedBias, WorldInfo, generate_world, image_background, list_images, load_world

__all__ = [
    "DEFAULT_EPOCHS",
    "DEMO_LAYERS",
    "DEMO_MEAN",
    "DEMO_STD",
    "MODEL_VERSION",
    "BiasReport",
    "DemoCNN",
    "TrainResult",
    "build_model",
    "num_classes_of",
    "ensure_demo",
    "load_split_tensors",
    "measure_planted_bias",
    "predict",
    "train_demo_model",
]

#: Bumped whenever the architecture or the training recipe changes (invalidates caches).
MODEL_VERSION = 1
#: Layers to analyse, logit layer first (the order NeurFlow walks down the network).
DEMO_LAYERS: tuple[str, ...] = ("fc", "block4", "block3", "block2")
#: Per-channel statistics of the demo world's training images (pixels in [0, 1]).
DEMO_MEAN: tuple[float, float, float] = (0.43, 0.54, 0.45)
DEMO_STD: tuple[float, float, float] = (0.31, 0.21, 0.31)
DEFAULT_EPOCHS = 10
_WIDTHS = (16, 32, 64, 64)
_RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "batch_size": 64, "schedule": "onecycle", "augment": "hflip"}


class DemoCNN(nn.Module):
    """Four Conv-BN-ReLU blocks (max-pooled after the first three), average pool, linear.

    Args:
        num_classes: number of output logits.
        widths: output channels of ``block1`` ... ``block4``.
    """

    def __init__(self, num_classes: int = 5, widths: tuple[int, int, int, int] = _WIDTHS) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        self.block1 = _block(3, c1, pool=True)
        self.block2 = _block(c1, c2, pool=True)
        self.block3 = _block(c2, c3, pool=True)
        self.block4 = _block(c3, c4, pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of normalised images (N, 3, 64, 64)."""
        x = self.block1(x)  # (N, 16, 32, 32)
        x = self.block2(x)  # (N, 32, 16, 16)
        x = self.block3(x)  # (N, 64, 8, 8)
        x = self.block4(x)  # (N, 64, 8, 8)
        x = self.pool(x)  # (N, 64, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, num_classes)


def _block(cin: int, cout: int, *, pool: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        bn=nn.BatchNorm2d(cout),
        relu=nn.ReLU(),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def num_classes_of(weights: Path) -> int:
    """The number of classes of a saved demo state_dict (its ``fc`` rows)."""
    try:
        return int(torch.load(weights, map_location="cpu", weights_only=True)["fc.weight"].shape[0])
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"'{weights}' is not a demo model state_dict ({type(exc).__name__})") from None


def build_model(num_classes: int = 5) -> DemoCNN:
    """An untrained :class:`DemoCNN` (the factory ``neurflow.ingest.demo.model:build_model``).

    Raises:
        InputError: if ``num_classes`` is not a positive integer.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    return DemoCNN(num_classes)


@dataclass(frozen=True)
class TrainResult:
    """A trained (or reused) demo model and its validation figures.

    Attributes:
        model: the :class:`DemoCNN`, on CPU, in eval mode.
        val_accuracy: top-1 accuracy on the world's ``val`` split.
        per_class_accuracy: class name -> top-1 accuracy on that class's ``val`` images.
        seconds: wall-clock seconds the training took (when it was trained, for a reuse).
        reused: True if the weights came from the cache.
        false_positive_by_background: see :attr:`BiasReport.rate_by_background` (the
            planted-bias check, measured on ``val`` after training).
    """

    model: DemoCNN
    val_accuracy: float
    per_class_accuracy: Mapping[str, float]
    seconds: float
    reused: bool
    false_positive_by_background: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BiasReport:
    """How often images of other classes are predicted as the planted bias's class.

    Attributes:
        class_name: the biased class (``bee``).
        rate_by_background: background concept -> fraction of the ``val`` images of the
            *other* classes on that background that the model predicts as ``class_name``.
            With the planted bias learnt, the bias concept's (``flowers``) rate is the
            highest.
        count_by_background: background concept -> number of those images.
    """

    class_name: str
    rate_by_background: Mapping[str, float]
    count_by_background: Mapping[str, int]


def load_split_tensors(world: WorldInfo, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images of one split, in ImageFolder order.

    Returns:
        ``(images, labels, paths)``: uint8 (N, 3, H, W), int64 (N,) class indices, and the
        images' paths relative to ``world.root``.
    """
    items = list_images(world, split)
    pixels = np.stack([np.asarray(Image.open(world.root / rel).convert("RGB")) for rel, _ in items])  # (N, H, W, 3)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    labels = torch.tensor([world.classes.index(cls) for _, cls in items], dtype=torch.int64)  # (N,)
    return images, labels, [rel for rel, _ in items]


def measure_planted_bias(world: WorldInfo, model: nn.Module, *, batch_size: int = 256) -> BiasReport:
    """Per background, the rate at which ``val`` images of other classes are called ``bee``.

    Args:
        world: the demo world.
        model: a classifier of normalised images (any device; inputs follow its parameters).
        batch_size: images per forward pass.
    """
    images, labels, paths = load_split_tensors(world, "val")
    preds = predict(model, images, batch_size)
    target = world.classes.index(world.bias.class_name)
    hits: dict[str, list[bool]] = {b: [] for b in world.background_concepts}
    for rel, label, pred in zip(paths, labels.tolist(), preds.tolist(), strict=True):
        if label != target:
            hits[image_background(world, rel)].append(pred == target)
    return BiasReport(
        class_name=world.bias.class_name,
        rate_by_background={b: (float(np.mean(h)) if h else 0.0) for b, h in hits.items()},
        count_by_background={b: len(h) for b, h in hits.items()},
    )


def train_demo_model(
    world_root: Path,
    cache_path: Path,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    quiet: bool = False,
) -> TrainResult:
    """Train the demo CNN on the world's ``train`` split, or reuse the cached weights.

    The state_dict is saved at ``cache_path`` and a sidecar ``cache_path.with_suffix(
    ".json")`` records the seed, epochs, recipe, world identity and the validation
    figures; the sidecar is written last, and the cache is reused only when it matches.
    Training runs on CPU with all available cores and a fixed seed (the global thread
    count is restored afterwards); it gives bit-identical weights for the same seed, torch
    build and core count.

    Args:
        world_root: folder of a generated world (:func:`~.world.generate_world`).
        cache_path: where the weights go (``.../model.pt``).
        seed: seed of initialisation, shuffling and augmentation.
        epochs: passes over the training split.
        quiet: no progress bar.
        bias: the world's planted correlation (default: bee on flowers; ``UNBIASED`` for
            the debugger's negative control).

    Returns:
        The :class:`TrainResult`; ``reused`` tells whether the cache was used.

    Raises:
        ArtifactError: if there is no world at ``world_root``.
        InputError: if ``epochs`` is not a positive integer.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    world = load_world(world_root)
    cache_path = Path(cache_path)
    sidecar_path = cache_path.with_suffix(".json")
    key = _cache_key(world, seed, epochs)

    cached = _load_cached(cache_path, sidecar_path, key, len(world.classes))
    if cached is not None:
        return cached

    with _training_context(seed):
        t0 = time.perf_counter()
        model, per_class, accuracy = _fit(world, seed, epochs, quiet)
        seconds = time.perf_counter() - t0
        bias = measure_planted_bias(world, model)
        threads = torch.get_num_threads()

    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(cache_path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, cache_path)
    sidecar = {
        **key,
        "val_accuracy": accuracy,
        "per_class_accuracy": per_class,
        "false_positive_by_background": dict(bias.rate_by_background),
        "seconds": seconds,
        "torch": torch.__version__,
        "threads": threads,
    }
    tmp = sidecar_path.with_name(sidecar_path.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, sidecar_path)
    return TrainResult(model, accuracy, per_class, seconds, False, dict(bias.rate_by_background))


def ensure_demo(
    root: Path,
    quiet: bool = False,
    bias: PlantedBias | None = None,
    *,
    world_seed: int = 0,
    lookalikes: bool = False,
    n_train: int = 400,
    n_val: int = 100,
    epochs: int = DEFAULT_EPOCHS,
) -> tuple[WorldInfo, TrainResult]:
    """Generate (or reuse) the demo world under ``root/world`` and train (or reuse) ``root/model.pt``.

    Args:
        root: the demo folder (``.neurflow/demo`` for ``neurflow demo``).
        quiet: no progress bar.
        bias: the world's planted correlation (default: bee on flowers; ``UNBIASED`` for
            the debugger's negative control).
        world_seed / lookalikes / n_train / n_val: the world (:func:`generate_world`).
        epochs: training passes.

    Returns:
        ``(world, result)``: the world (by default 400 training and 100 validation images
        per class, seed 0) and the model trained on it with seed 0 (``root/model.pt`` plus
        its sidecar ``root/model.json``).
    """
    root = Path(root)
    world = generate_world(root / "world", seed=world_seed, n_train=n_train, n_val=n_val, bias=bias, lookalikes=lookalikes)
    return world, train_demo_model(world.root, root / "model.pt", epochs=epochs, quiet=quiet)


# ----------------------------------------------------------------------------- internals


def _cache_key(world: WorldInfo, seed: int, epochs: int) -> dict[str, object]:
    return {
        "format": 1,
        "model_version": MODEL_VERSION,
        "seed": seed,
        "epochs": epochs,
        "recipe": dict(_RECIPE),
        "widths": list(_WIDTHS),
        "mean": list(DEMO_MEAN),
        "std": list(DEMO_STD),
        "world": {
            "version": world.version, "seed": world.seed, "n_train": world.n_train, "n_val": world.n_val,
            "bias": asdict(world.bias), "classes": list(world.classes),
        },
    }


def _load_cached(cache_path: Path, sidecar_path: Path, key: Mapping[str, object], num_classes: int) -> TrainResult | None:
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or any(sidecar.get(k) != v for k, v in key.items()):
        return None
    model = build_model(num_classes)
    try:
        state = torch.load(cache_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (OSError, RuntimeError, ValueError, KeyError):
        return None
    model.eval()
    return TrainResult(
        model=model,
        val_accuracy=float(sidecar["val_accuracy"]),
        per_class_accuracy={str(k): float(v) for k, v in sidecar["per_class_accuracy"].items()},
        seconds=float(sidecar["seconds"]),
        reused=True,
        false_positive_by_background={str(k): float(v) for k, v in sidecar.get("false_positive_by_background", {}).items()},
    )


@contextmanager
def _training_context(seed: int) -> Iterator[None]:
    """Seeded CPU torch on all available cores; the thread count is restored on exit.

    ``torch.use_deterministic_algorithms`` is not switched on: its first call imports
    torch's compiler stack (~10 s on two cores), and the CPU kernels used here (conv, batch
    norm, max pool, linear, AdamW) are deterministic for a fixed thread count anyway, which
    the tests check by training twice and comparing weights bit for bit.
    """
    threads = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores))
        torch.manual_seed(seed)
        yield
    finally:
        torch.set_num_threads(threads)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(DEMO_MEAN).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    std = torch.tensor(DEMO_STD).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std  # (N, 3, H, W)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class indices the demo model predicts for uint8 ``(N, 3, H, W)`` images (normalised
    here, in batches, in eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        preds = [
            model(_normalise(images[i : i + batch_size]).to(device)).argmax(1).cpu()  # (B,)
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(preds)  # (N,)


def _fit(world: WorldInfo, seed: int, epochs: int, quiet: bool) -> tuple[DemoCNN, dict[str, float], float]:
    from tqdm.auto import tqdm

    x_train, y_train, _ = load_split_tensors(world, "train")  # (N, 3, H, W) uint8, (N,)
    x_val, y_val, _ = load_split_tensors(world, "val")
    x_train = _normalise(x_train)  # (N, 3, H, W)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(len(world.classes))
    batch = int(_RECIPE["batch_size"])
    steps_per_epoch = (len(x_train) + batch - 1) // batch
    optimiser = torch.optim.AdamW(model.parameters(), lr=float(_RECIPE["lr"]), weight_decay=float(_RECIPE["weight_decay"]))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=float(_RECIPE["lr"]), total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()

    bar = tqdm(range(epochs), desc="demo model", unit="epoch", disable=quiet)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)  # (N,)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]  # (B,)
            xb, yb = x_train[idx], y_train[idx]  # (B, 3, H, W), (B,)
            flip = torch.rand(len(idx), generator=generator) < 0.5  # (B,)
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)  # (B, 3, H, W)
            logits = model(xb)  # (B, C)
            loss = loss_fn(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.3f}", train_acc=f"{correct / seen:.3f}")
    bar.close()

    model.eval()
    preds = predict(model, x_val)  # (N,)
    per_class = {
        cls: float((preds[y_val == k] == k).float().mean()) if bool((y_val == k).any()) else 0.0
        for k, cls in enumerate(world.classes)
    }
    return model, per_class, float((preds == y_val).float().mean())


def _build_for_registry(model: str, weights: str | None, demo_root: Path | None):
    """The demo CNN as a model family (see :mod:`neurflow.ingest.models`): the weights are
    ``<demo_root>/model.pt`` unless given; the input is 64 px as trained (no crop)."""
    from ..models import Built, _load_state_dict

    root = Path(demo_root) if demo_root is not None else Path(".neurflow/demo")
    state = Path(weights) if weights is not None else root / "model.pt"
    if not state.is_file():
        if weights is None:
            raise InputError(f"the demo model is not trained yet ({state} is missing); run 'neurflow demo' or 'make demo'")
        raise InputError(f"weights '{weights}' is neither a file nor a torchvision weights name")
    module = build_model(num_classes_of(state))
    _load_state_dict(module, state)
    return Built(module, "demo", tuple(DEMO_LAYERS), input_size=64, resize=64, mean=tuple(DEMO_MEAN), std=tuple(DEMO_STD),
                 weights_desc=f"file:{state.name}", weights_consumed=True, weights_file=state)


def model_family():
    """The demo's entry in the model registry."""
    from ..models import ModelFamily

    return ModelFamily("demo", lambda m: m == "demo", _build_for_registry, lambda: ["demo"])
