"""A deterministic procedural image world with per-pixel concept labels and one planted bias.

Five object classes, each a distinct shape with a distinct texture, are drawn over five
textured backgrounds:

==========  ==============================================  ===========  ============================
class       object                                          background   texture
==========  ==============================================  ===========  ============================
``bee``     yellow/black striped ellipse, pale wings, head  ``flowers``  pink petal blobs on green
``fish``    orange body with a blue scale lattice, tail     ``grass``    wavy vertical green blades
``kite``    two-tone checkerboard diamond with a tail       ``sand``     beige grain and ripples
``ladybug`` red disk, black head, midline and dots          ``sky``      blue gradient, white clouds
``leaf``    light-green lens with dark midrib and veins     ``water``    dark teal with light wavelets
==========  ==============================================  ===========  ============================

Each object gets a random position, scale, rotation, brightness and colour jitter, and
each image pixel noise. 30% of the objects are small and faint (35-60% opacity): their own
evidence is weak, so a classifier falls back on the background for them, which is how the
planted bias below turns into false positives (a model trained on this world confuses
faint non-bee objects on ``flowers`` for bees, and only there).

Every pixel of every image carries one concept id from a single vocabulary
(:data:`CONCEPTS`: object concepts first, then background concepts), so one can check which
concept a patch shows (:func:`concept_fractions`).

The planted spurious correlation: in ``train`` the ``bee`` class sits on ``flowers`` in
``train_rate`` (0.9) of its images and every other class in ``other_rate`` (0.05) of
theirs; the remaining images are spread evenly over the other backgrounds. In ``val`` every
class is spread evenly over all five backgrounds. Counts are exact (largest-remainder
rounding, then shuffled), not sampled, so the rates can be checked to the image.

On disk (``root`` is the argument of :func:`generate_world`)::

    root/world.json                 metadata (:class:`WorldInfo`), written last
    root/train/<class>/<id>.png     64x64 RGB, torchvision ImageFolder layout
    root/val/<class>/<id>.png
    root/concepts_train.npz         one uint8 HxW concept map per image,
    root/concepts_val.npz           key = image path relative to root ("train/bee/00000.png")

Everything is a pure function of ``seed`` (one numpy generator per image, seeded from
``(seed, split, class, index)``): the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from neurflow.artifact import write_npz

from ..errors import ArtifactError, InputError

__all__ = [
    "BACKGROUNDS",
    "CLASSES",
    "CONCEPTS",
    "LOOKALIKES",
    "SPLITS",
    "WORLD_VERSION",
    "UNBIASED",
    "PlantedBias",
    "WorldInfo",
    "concept_fractions",
    "concept_map",
    "concept_maps",
    "generate_world",
    "image_background",
    "list_images",
    "load_world",
    "swap_background",
    "world_classes",
]

#: Bumped whenever drawing changes, so that a cached world on disk is regenerated.
WORLD_VERSION = 1
IMAGE_SIZE = 64
#: Sorted, so that index = torchvision ImageFolder's class index = model output index.
CLASSES: tuple[str, ...] = ("bee", "fish", "kite", "ladybug", "leaf")
BACKGROUNDS: tuple[str, ...] = ("flowers", "grass", "sand", "sky", "water")
#: The concept vocabulary: concept id = index. Each class's object concept has its name.
CONCEPTS: tuple[str, ...] = CLASSES + BACKGROUNDS
#: Look-alike classes added by ``generate_world(lookalikes=True)``: class -> the class it
#: resembles. A hoverfly has a bee's striped body with its own head, eyes and wings, so a
#: model confuses some of them for object reasons, not for a spurious context.
LOOKALIKES: dict[str, str] = {"hoverfly": "bee"}
SPLITS: tuple[str, ...] = ("train", "val")

_SPLIT_KEY = {"train": 0, "val": 1}
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_META = "world.json"


@dataclass(frozen=True)
class PlantedBias:
    """The one spurious correlation planted in the training split.

    Attributes:
        class_name: the class that gets the background concept unusually often (``bee``).
        concept: the background concept (``flowers``).
        train_rate: fraction of ``class_name``'s training images on ``concept``.
        other_rate: fraction of every other class's training images on ``concept``.
    """

    class_name: str = "bee"
    concept: str = "flowers"
    train_rate: float = 0.9
    other_rate: float = 0.05


# Every class on flowers in 1/5 of its training images, like every other background.
UNBIASED = PlantedBias(train_rate=0.2, other_rate=0.2)


@dataclass(frozen=True)
class WorldInfo:
    """A generated world, as read back from ``root/world.json`` by :func:`load_world`.

    Attributes:
        root: the world's folder (absolute).
        version: :data:`WORLD_VERSION` of the code that drew it.
        seed: the generation seed.
        image_size: height = width of every image, in pixels.
        n_train: training images per class.
        n_val: validation images per class.
        classes: class names, sorted; index = ImageFolder class index = model output.
        concepts: concept vocabulary; index = the uint8 id in the concept maps.
        object_concepts: class name -> the concept id's name of its object.
        background_concepts: names of the background concepts.
        bias: the planted spurious correlation.
        counts: split -> class -> number of images.
        background_counts: split -> class -> background concept -> number of images.
    """

    root: Path
    version: int
    seed: int
    image_size: int
    n_train: int
    n_val: int
    classes: tuple[str, ...]
    concepts: tuple[str, ...]
    object_concepts: Mapping[str, str]
    background_concepts: tuple[str, ...]
    bias: PlantedBias
    counts: Mapping[str, Mapping[str, int]]
    background_counts: Mapping[str, Mapping[str, Mapping[str, int]]]

    def concept_id(self, name: str) -> int:
        """The uint8 id of concept ``name`` in the concept maps."""
        try:
            return self.concepts.index(name)
        except ValueError:
            raise InputError(f"unknown concept {name!r}; known: {', '.join(self.concepts)}") from None

    def split_dir(self, split: str) -> Path:
        """``root/<split>``, the ImageFolder root of one split."""
        _check_split(split)
        return self.root / split

    def concepts_path(self, split: str) -> Path:
        """``root/concepts_<split>.npz``."""
        _check_split(split)
        return self.root / f"concepts_{split}.npz"


# ----------------------------------------------------------------------------- public API


def world_classes(lookalikes: bool = False) -> tuple[str, ...]:
    """The classes of a world, sorted (index = ImageFolder class index = model output)."""
    return tuple(sorted(CLASSES + (tuple(LOOKALIKES) if lookalikes else ())))


def generate_world(
    root: Path, seed: int = 0, n_train: int = 400, n_val: int = 100, bias: PlantedBias | None = None, lookalikes: bool = False
) -> WorldInfo:
    """Write the demo world under ``root``, or reuse it if it is already there.

    The world is reused when ``root/world.json`` exists with the same version, seed and
    sizes and both concept files exist; otherwise the world's own files (``train/``,
    ``val/``, the concept files, ``world.json``) are removed and drawn again. Other files
    under ``root`` are left alone.

    Args:
        root: folder to write into (created if missing).
        seed: generation seed; the output is a pure function of it and the sizes.
        n_train: training images per class.
        n_val: validation images per class.
        bias: the planted correlation (default :class:`PlantedBias`: bee on flowers in 90%
            of its training images). ``UNBIASED`` puts every class on every background
            equally often: the negative control of the bias debugger.
        lookalikes: add the :data:`LOOKALIKES` classes (a ``hoverfly`` that resembles
            ``bee``); concept ids are then the world's classes followed by the backgrounds.

    Returns:
        The world's :class:`WorldInfo`.

    Raises:
        InputError: if a size is not a positive integer.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer (images per class), got {value!r}")
    root = Path(root).absolute()
    bias = bias if bias is not None else PlantedBias()
    classes = world_classes(lookalikes)
    concepts = classes + BACKGROUNDS
    if _is_current(root, seed, n_train, n_val, bias, classes):
        return load_world(root)

    for stale in (root / _META, *(root / s for s in SPLITS), *(root / f"concepts_{s}.npz" for s in SPLITS)):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    root.mkdir(parents=True, exist_ok=True)

    sizes = {"train": n_train, "val": n_val}
    counts: dict[str, dict[str, int]] = {}
    background_counts: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        maps: dict[str, np.ndarray] = {}
        counts[split] = {}
        background_counts[split] = {}
        for ci, cls in enumerate(classes):
            n = sizes[split]
            backgrounds = _assign_backgrounds(n, _background_probs(split, cls, bias), seed, split, ci)
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, bg in enumerate(backgrounds):
                rng = np.random.default_rng([seed, _SPLIT_KEY[split], ci, i])
                image, cmap = _draw_image(rng, cls, BACKGROUNDS[bg], concepts)
                rel = f"{split}/{cls}/{i:05d}.png"
                Image.fromarray(image).save(root / rel, format="PNG", compress_level=1)
                maps[rel] = cmap
            counts[split][cls] = n
            background_counts[split][cls] = {
                b: int(np.sum(backgrounds == k)) for k, b in enumerate(BACKGROUNDS)
            }
        write_npz(root / f"concepts_{split}.npz", maps)

    meta = {
        "version": WORLD_VERSION,
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "n_train": n_train,
        "n_val": n_val,
        "classes": list(classes),
        "concepts": {str(i): name for i, name in enumerate(concepts)},
        "object_concepts": {cls: cls for cls in classes},
        "background_concepts": list(BACKGROUNDS),
        "planted_bias": _bias_doc(bias),
        "counts": counts,
        "background_counts": background_counts,
        "concept_files": {s: f"concepts_{s}.npz" for s in SPLITS},
    }
    tmp = root / (_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, root / _META)
    return load_world(root)


def load_world(root: Path) -> WorldInfo:
    """Read ``root/world.json`` back into a :class:`WorldInfo`.

    Raises:
        ArtifactError: if there is no world under ``root`` (run :func:`generate_world`), or
            ``world.json`` is not a world description.
    """
    root = Path(root).absolute()
    path = root / _META
    if not path.is_file():
        raise ArtifactError(f"no demo world at {root} (missing {_META}); run generate_world({str(root)!r})")
    try:
        meta = json.loads(path.read_text())
        concepts = meta["concepts"]
        pb = meta["planted_bias"]
        return WorldInfo(
            root=root,
            version=int(meta["version"]),
            seed=int(meta["seed"]),
            image_size=int(meta["image_size"]),
            n_train=int(meta["n_train"]),
            n_val=int(meta["n_val"]),
            classes=tuple(meta["classes"]),
            concepts=tuple(concepts[str(i)] for i in range(len(concepts))),
            object_concepts=dict(meta["object_concepts"]),
            background_concepts=tuple(meta["background_concepts"]),
            bias=PlantedBias(pb["class"], pb["concept"], float(pb["train_rate"]), float(pb["other_rate"])),
            counts={s: dict(c) for s, c in meta["counts"].items()},
            background_counts={
                s: {c: dict(b) for c, b in per.items()} for s, per in meta["background_counts"].items()
            },
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not a demo world description ({exc!r}); delete it and regenerate") from exc


def list_images(world: WorldInfo, split: str) -> list[tuple[str, str]]:
    """All images of one split as ``(relative path, class name)``, in ImageFolder order."""
    _check_split(split)
    return [
        (f"{split}/{cls}/{i:05d}.png", cls)
        for cls in world.classes
        for i in range(world.counts[split][cls])
    ]


def concept_maps(world: WorldInfo, split: str) -> dict[str, np.ndarray]:
    """All concept maps of one split: relative image path -> uint8 (H, W) concept ids.

    Loaded once per file version and cached; the arrays are read-only.
    """
    path = world.concepts_path(split)
    stat = path.stat()
    return _load_npz(str(path), stat.st_mtime_ns, stat.st_size)


def concept_map(world: WorldInfo, rel_path: str | os.PathLike[str]) -> np.ndarray:
    """The uint8 (H, W) concept-id map of one image (read-only).

    Args:
        world: the world.
        rel_path: image path relative to ``world.root`` (``"val/bee/00003.png"``), or an
            absolute path inside it.

    Raises:
        InputError: if the image is not part of the world.
    """
    key = _rel_key(world, rel_path)
    split = key.split("/", 1)[0]
    if split not in SPLITS:
        raise InputError(f"{key!r} is not an image of the world at {world.root} (expected train/... or val/...)")
    maps = concept_maps(world, split)
    if key not in maps:
        raise InputError(f"{key!r} is not an image of the world at {world.root}")
    return maps[key]


def image_background(world: WorldInfo, rel_path: str | os.PathLike[str]) -> str:
    """The background concept of one image (read from its concept map)."""
    cmap = concept_map(world, rel_path)
    ids = np.array([world.concept_id(b) for b in world.background_concepts])
    hist = np.bincount(cmap.ravel(), minlength=len(world.concepts))
    return world.background_concepts[int(np.argmax(hist[ids]))]


def concept_fractions(
    world: WorldInfo,
    rel_path: str | os.PathLike[str],
    box: tuple[float, float, float, float],
) -> dict[str, float]:
    """Fraction of the pixels of each concept inside a crop box of one image.

    Args:
        world: the world.
        rel_path: image path relative to ``world.root`` (see :func:`concept_map`).
        box: ``(x0, y0, x1, y1)`` in pixel coordinates of the image, x = column, end
            exclusive; fractional bounds are widened to whole pixels, and the box is
            clipped to the image.

    Returns:
        Every concept of the vocabulary (in id order) -> fraction of the box's pixels
        showing it; the values sum to 1.

    Raises:
        InputError: if the box is empty after clipping, or the image is not in the world.
    """
    cmap = concept_map(world, rel_path)
    h, w = cmap.shape
    x0, y0, x1, y1 = box
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"box {box} is empty inside the {w}x{h} image (need x0 < x1 and y0 < y1, overlapping it)")
    crop = cmap[r0:r1, c0:c1]
    hist = np.bincount(crop.ravel(), minlength=len(world.concepts))
    total = crop.size
    return {name: float(hist[i]) / total for i, name in enumerate(world.concepts)}


def swap_background(
    world: WorldInfo,
    rel_path: str | os.PathLike[str],
    background: str,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A counterfactual of one image: its object's pixels pasted on a freshly drawn background.

    The ground truth the debugger is checked against: if moving an image's object onto
    another background changes the model's prediction, the background, not the object,
    decided it. Object pixels are copied as they are, so a faint object keeps the trace of
    its original background that its opacity blend left in them; the new background gets
    no pixel noise (the object's pixels keep theirs).

    Args:
        world: the world.
        rel_path: image path relative to ``world.root`` (see :func:`concept_map`).
        background: one of ``world.background_concepts``.
        seed: the new background's draw (the same seed gives the same pixels).

    Returns:
        ``(image, concept_map)``: uint8 (H, W, 3) and uint8 (H, W), the object's concept
        ids unchanged and every other pixel labelled ``background``.

    Raises:
        InputError: unknown background, or an image not in the world.
    """
    if background not in world.background_concepts:
        raise InputError(f"unknown background {background!r}; expected one of {', '.join(world.background_concepts)}")
    cmap = concept_map(world, rel_path)
    obj = np.isin(cmap, [world.concept_id(c) for c in world.object_concepts.values()])
    original = np.asarray(Image.open(world.root / _rel_key(world, rel_path)).convert("RGB"))
    canvas = _BACKGROUND_DRAW[background](np.random.default_rng([seed, 7_919]))
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    image[obj] = original[obj]
    swapped = np.where(obj, cmap, np.uint8(world.concept_id(background))).astype(np.uint8)
    return image, swapped


# ----------------------------------------------------------------------------- files


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _rel_key(world: WorldInfo, rel_path: str | os.PathLike[str]) -> str:
    path = Path(rel_path)
    if path.is_absolute():
        try:
            path = path.relative_to(world.root)
        except ValueError:
            raise InputError(f"{rel_path} is not inside the world at {world.root}") from None
    return PurePosixPath(*path.parts).as_posix()


def _is_current(root: Path, seed: int, n_train: int, n_val: int, bias: PlantedBias, classes: tuple[str, ...]) -> bool:
    try:
        meta = json.loads((root / _META).read_text())
    except (OSError, ValueError):
        return False
    same = (
        meta.get("version") == WORLD_VERSION
        and meta.get("seed") == seed
        and meta.get("n_train") == n_train
        and meta.get("n_val") == n_val
        and meta.get("image_size") == IMAGE_SIZE
        and meta.get("planted_bias") == _bias_doc(bias)
        and meta.get("classes") == list(classes)
    )
    return same and all((root / f"concepts_{s}.npz").is_file() for s in SPLITS)


def _bias_doc(bias: PlantedBias) -> dict[str, object]:
    return {"class": bias.class_name, "concept": bias.concept, "train_rate": bias.train_rate, "other_rate": bias.other_rate}


@lru_cache(maxsize=8)
def _load_npz(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    del mtime_ns, size  # cache keys only: a rewritten file is read again
    with np.load(path, allow_pickle=False) as npz:
        out = {key: npz[key] for key in npz.files}
    for arr in out.values():
        arr.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- sampling


def _background_probs(split: str, cls: str, bias: PlantedBias) -> np.ndarray:
    """Probability of each background for one class in one split."""
    n_bg = len(BACKGROUNDS)
    if split != "train":
        return np.full(n_bg, 1.0 / n_bg)
    rate = bias.train_rate if cls == bias.class_name else bias.other_rate
    probs = np.full(n_bg, (1.0 - rate) / (n_bg - 1))
    probs[BACKGROUNDS.index(bias.concept)] = rate
    return probs


def _assign_backgrounds(n: int, probs: np.ndarray, seed: int, split: str, class_index: int) -> np.ndarray:
    """Exact background counts by largest remainder (ties broken at random), shuffled."""
    rng = np.random.default_rng([seed, _SPLIT_KEY[split], class_index, 1_000_003])
    exact = probs * n
    counts = np.floor(exact).astype(int)
    remainder = exact - counts
    order = np.lexsort((rng.random(len(probs)), -np.round(remainder, 9)))
    counts[order[: n - counts.sum()]] += 1
    labels = np.repeat(np.arange(len(probs)), counts)
    return rng.permutation(labels)


# ----------------------------------------------------------------------------- drawing

_S = IMAGE_SIZE
_YY, _XX = np.mgrid[0:_S, 0:_S].astype(np.float32) + 0.5  # pixel centres


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.07) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) * (1.0 + rng.normal(0.0, amount, 3)), 0.0, 1.0).astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, rgb: np.ndarray, alpha: float = 1.0) -> None:
    img[mask] = (1.0 - alpha) * img[mask] + alpha * rgb


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise on a ``cells`` x ``cells`` grid, values in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    g = _XX / _S * cells, _YY / _S * cells
    x0, y0 = np.floor(g[0]).astype(int), np.floor(g[1]).astype(int)
    fx, fy = g[0] - x0, g[1] - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# Backgrounds: (rng) -> float32 (H, W, 3) in [0, 1].


def _bg_flowers(rng: np.random.Generator) -> np.ndarray:
    base = _jitter(rng, (0.30, 0.52, 0.20))
    img = base * (0.8 + 0.4 * _smooth_noise(rng, 4))[..., None]
    n = int(rng.integers(14, 24))
    cx, cy = rng.uniform(-2, _S + 2, n), rng.uniform(-2, _S + 2, n)
    radius = rng.uniform(2.8, 5.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    petal = np.zeros((_S, _S), bool)
    centre = np.zeros((_S, _S), bool)
    for x, y, r, p in zip(cx, cy, radius, phase, strict=True):  # each flower touches only its own window
        c0, c1 = max(0, int(x - r)), min(_S, int(x + r) + 2)
        r0, r1 = max(0, int(y - r)), min(_S, int(y + r) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        dx, dy = _XX[r0:r1, c0:c1] - x, _YY[r0:r1, c0:c1] - y
        dist = np.hypot(dx, dy)
        petal[r0:r1, c0:c1] |= dist < r * (0.72 + 0.28 * np.cos(5 * np.arctan2(dy, dx) + p))
        centre[r0:r1, c0:c1] |= dist < 0.3 * r
    _paint(img, petal, _jitter(rng, (0.96, 0.52, 0.76)))
    _paint(img, centre, _jitter(rng, (0.98, 0.85, 0.25)))
    return img


def _bg_grass(rng: np.random.Generator) -> np.ndarray:
    base = _jitter(rng, (0.22, 0.50, 0.14))
    cols = rng.random(_S + 8).astype(np.float32)
    sway = 2.5 * np.sin(_YY / rng.uniform(8, 14) + rng.uniform(0, 2 * np.pi))
    x = np.clip(_XX + sway + 4, 0, _S + 7)
    i0 = np.floor(x).astype(int)
    blade = cols[i0] * (1 - (x - i0)) + cols[np.minimum(i0 + 1, _S + 7)] * (x - i0)
    shade = 0.55 + 0.7 * blade * (0.7 + 0.3 * _smooth_noise(rng, 3))
    return base * shade[..., None]


def _bg_sky(rng: np.random.Generator) -> np.ndarray:
    top, bottom = _jitter(rng, (0.30, 0.55, 0.92)), _jitter(rng, (0.68, 0.84, 1.0))
    t = (_YY / _S)[..., None]
    img = top * (1 - t) + bottom * t
    cloud = np.zeros((_S, _S), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, _S), rng.uniform(0, _S)
        for _ in range(int(rng.integers(3, 6))):
            px, py = cx + rng.normal(0, 6), cy + rng.normal(0, 2.5)
            r = rng.uniform(4, 8)
            cloud = np.maximum(cloud, np.exp(-((_XX - px) ** 2 + (_YY - py) ** 2) / (2 * r * r)))
    cloud = np.clip(cloud * 1.4 - 0.2, 0, 1)[..., None]
    return img * (1 - cloud) + np.float32(0.97) * cloud


def _bg_sand(rng: np.random.Generator) -> np.ndarray:
    base = _jitter(rng, (0.86, 0.75, 0.53))
    theta = rng.uniform(0, np.pi)
    coord = _XX * np.cos(theta) + _YY * np.sin(theta)
    ripple = np.sin(2 * np.pi * coord / rng.uniform(5, 9) + 1.2 * np.sin(_XX / 9 + _YY / 11))
    grain = rng.normal(0, 0.07, (_S, _S)).astype(np.float32)
    return base * (1 + 0.08 * ripple + grain)[..., None]


def _bg_water(rng: np.random.Generator) -> np.ndarray:
    base = _jitter(rng, (0.06, 0.30, 0.48))
    img = base * (0.85 + 0.3 * _smooth_noise(rng, 3))[..., None]
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(_YY * rng.uniform(0.6, 0.9) + 1.8 * np.sin(_XX * rng.uniform(0.15, 0.3) + phase))
    crest = np.clip((wave - 0.75) / 0.25, 0, 1) * (0.5 + 0.5 * _smooth_noise(rng, 5))
    return img * (1 - crest[..., None]) + _jitter(rng, (0.62, 0.82, 0.90)) * crest[..., None]


_BACKGROUND_DRAW: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "flowers": _bg_flowers,
    "grass": _bg_grass,
    "sand": _bg_sand,
    "sky": _bg_sky,
    "water": _bg_water,
}


# Objects: (rng, img, u, v) paint in place and return the object's mask. (u, v) are the
# pixel centres in the object's frame: rotated, translated and divided by its scale.


def _obj_bee(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    wings = (((u - 0.05) / 0.38) ** 2 + ((np.abs(v) - 0.58) / 0.26) ** 2) < 1
    body = (u / 0.95) ** 2 + (v / 0.5) ** 2 < 1
    head = (u - 1.0) ** 2 + v**2 < 0.3**2
    _paint(img, wings & ~body, _jitter(rng, (0.88, 0.93, 0.98)), alpha=0.75)
    stripes = np.sin(2 * np.pi * u * 1.6 + rng.uniform(-0.4, 0.4)) > 0.0
    dark = _jitter(rng, (0.08, 0.06, 0.04))
    _paint(img, body & ~stripes, _jitter(rng, (0.96, 0.80, 0.10)))
    _paint(img, body & stripes, dark)
    _paint(img, head, dark)
    return wings | body | head


def _obj_fish(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = ((u - 0.1) / 0.95) ** 2 + (v / 0.5) ** 2 < 1
    tail = (u < -0.65) & (u > -1.35) & (np.abs(v) < 0.95 * (-0.65 - u))
    mask = body | tail
    su = u * 5.0
    sv = v * 5.0 + 0.5 * np.floor(su)
    ring = np.hypot(_frac(su) - 0.5, _frac(sv) - 0.5)
    scale_edge = (ring > 0.3) & (ring < 0.48)
    blue, orange = _jitter(rng, (0.12, 0.30, 0.88)), _jitter(rng, (0.98, 0.55, 0.10))
    _paint(img, mask & ~scale_edge, orange)
    _paint(img, mask & scale_edge, blue)
    _paint(img, tail & (np.abs(v) > 0.55 * (-0.65 - u)), blue)
    _paint(img, (u - 0.72) ** 2 + (v + 0.12) ** 2 < 0.1**2, _jitter(rng, (0.05, 0.05, 0.08)))
    return mask


def _obj_kite(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    length = np.where(u > 0, 0.7, 1.15)
    body = np.abs(u) / length + np.abs(v) / 0.68 < 1
    tail = (u < -1.1) & (u > -2.0) & (np.abs(v - 0.15 * np.sin(u * 9)) < 0.06)
    hues = ((0.90, 0.12, 0.12), (0.55, 0.15, 0.75), (0.95, 0.45, 0.05), (0.10, 0.25, 0.80))
    colour = _jitter(rng, hues[int(rng.integers(len(hues)))])
    light = _jitter(rng, (0.97, 0.97, 0.95), 0.03)
    checks = (np.floor((u + v) * 3.2) + np.floor((u - v) * 3.2)) % 2 == 0
    _paint(img, body & checks, colour)
    _paint(img, body & ~checks, light)
    _paint(img, tail, _jitter(rng, (0.15, 0.12, 0.10)))
    return body | tail


def _obj_ladybug(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shell = u**2 + v**2 < 0.78**2
    head = (u - 0.72) ** 2 + v**2 < 0.32**2
    black = _jitter(rng, (0.05, 0.04, 0.04))
    _paint(img, shell, _jitter(rng, (0.88, 0.10, 0.08)))
    dots = np.zeros_like(shell)
    for du, dv in ((0.25, 0.35), (0.25, -0.35), (-0.15, 0.45), (-0.15, -0.45), (-0.45, 0.2), (-0.45, -0.2)):
        dots |= (u - du) ** 2 + (v - dv) ** 2 < 0.13**2
    _paint(img, shell & (dots | (np.abs(v) < 0.04)), black)
    _paint(img, head & ~shell | head & (u > 0.55), black)
    return shell | head


def _obj_leaf(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    blade = (np.abs(u) < 1) & (np.abs(v) < 0.46 * (1 - u**2))
    stem = (u <= -0.95) & (u > -1.35) & (np.abs(v) < 0.045)
    vein_dark = _jitter(rng, (0.12, 0.30, 0.06))
    _paint(img, blade, _jitter(rng, (0.52, 0.80, 0.22)))
    side = np.abs(_frac((u - 1.1 * np.abs(v)) * 4.0) - 0.5) > 0.4
    _paint(img, blade & ((np.abs(v) < 0.045) | side), vein_dark)
    _paint(img, stem, vein_dark)
    return blade | stem


def _obj_hoverfly(rng: np.random.Generator, img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A bee look-alike: the same striped body, a broad head with large red-brown eyes, and
    one pair of long wings swept back at an angle."""
    wings = (((u + 0.15 - 0.55 * np.abs(v)) / 0.30) ** 2 + ((np.abs(v) - 0.62) / 0.32) ** 2) < 1
    body = (u / 0.95) ** 2 + (v / 0.42) ** 2 < 1
    head = ((u - 0.98) / 0.26) ** 2 + (v / 0.42) ** 2 < 1
    eyes = head & (np.abs(v) > 0.12)
    _paint(img, wings & ~body, _jitter(rng, (0.85, 0.90, 0.96)), alpha=0.6)
    stripes = np.sin(2 * np.pi * u * 1.6 + rng.uniform(-0.4, 0.4)) > 0.0
    dark = _jitter(rng, (0.08, 0.06, 0.04))
    _paint(img, body & ~stripes, _jitter(rng, (0.96, 0.80, 0.10)))
    _paint(img, body & stripes, dark)
    _paint(img, head & ~eyes, dark)
    _paint(img, eyes, _jitter(rng, (0.62, 0.18, 0.10)))
    return wings | body | head


_OBJECT_DRAW: dict[str, Callable[..., np.ndarray]] = {
    "bee": _obj_bee,
    "hoverfly": _obj_hoverfly,
    "fish": _obj_fish,
    "kite": _obj_kite,
    "ladybug": _obj_ladybug,
    "leaf": _obj_leaf,
}


#: A fraction of the objects are drawn small and faint (low opacity). Their own evidence
#: is weak, so a classifier leans on the background for them: this is what makes the
#: planted background bias show up as false positives on ``val``.
_FAINT_PROB = 0.3
_FAINT_OPACITY = (0.35, 0.6)
_FAINT_SCALE = (7.0, 12.0)
_CLEAR_OPACITY = (0.85, 1.0)
_CLEAR_SCALE = (9.0, 19.0)


def _draw_image(rng: np.random.Generator, cls: str, background: str, concepts: tuple[str, ...] = CONCEPTS) -> tuple[np.ndarray, np.ndarray]:
    """One image and its concept map: uint8 (H, W, 3) and uint8 (H, W) of ids into ``concepts``."""
    img = _BACKGROUND_DRAW[background](rng)
    faint = rng.random() < _FAINT_PROB
    scale = rng.uniform(*(_FAINT_SCALE if faint else _CLEAR_SCALE))
    opacity = np.float32(rng.uniform(*(_FAINT_OPACITY if faint else _CLEAR_OPACITY)))
    margin = 0.75 * scale
    cx, cy = rng.uniform(margin, _S - margin, 2)
    theta = rng.uniform(0, 2 * np.pi)
    dx, dy = _XX - cx, _YY - cy
    c, s = np.cos(theta), np.sin(theta)
    u = (dx * c + dy * s) / scale
    v = (-dx * s + dy * c) / scale
    brightness = np.float32(rng.uniform(0.8, 1.15))
    obj = np.empty_like(img)
    obj[...] = img
    mask = _OBJECT_DRAW[cls](rng, obj, u, v)
    img[mask] = (1 - opacity) * img[mask] + opacity * np.clip(obj[mask] * brightness, 0, 1)
    img += rng.normal(0.0, rng.uniform(0.01, 0.05), img.shape).astype(np.float32)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    cmap = np.full((_S, _S), concepts.index(background), np.uint8)
    cmap[mask] = concepts.index(cls)
    return image, cmap
