"""The two halves of ingestion: compute artifacts, then load them into the graph.

``compute`` writes one artifact directory per class (``<out>/<model>/<index>-<name>/``:
``circuit.json``, ``arrays.npz``, ``thumbs/``, and ``run.json`` written last). A class
whose artifact is complete and was computed with the same model weights and settings is
skipped, so an interrupted run loses at most the class in flight. ``load`` reads artifacts
and replaces each class's subgraph; it never needs the model or the images, so a database
that was down during ``compute`` can be filled later with ``neurflow load``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neurflow.artifact import is_complete, load_circuit
from neurflow.circuit import Circuit, CircuitConfig

from .errors import ArtifactError, InputError, NeurflowError

if TYPE_CHECKING:
    import torch

    from .images import DataIndex
    from .models import ModelSpec

__all__ = [
    "ComputeRequest", "ClassOutcome", "Prepared", "artifact_dir", "compute", "compute_class", "find_artifacts",
    "is_up_to_date", "load", "prepare", "RUN_FILE",
]

RUN_FILE = "run.json"
ProgressFactory = Callable[[str, int], object]


@dataclass(frozen=True)
class ComputeRequest:
    """Everything ``neurflow compute`` needs (the CLI builds it from its options)."""

    model: str
    data: Path
    out: Path
    classes: str = "all"
    weights: str | None = None
    layers: tuple[str, ...] | None = None
    include_misclassified: bool = False
    config: CircuitConfig = field(default_factory=CircuitConfig)
    device: str = "auto"
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: bool = True
    thumbnails: bool = True
    demo_root: Path | None = None
    resize: str | None = None  # the resize policy (neurflow.ingest.preprocess); None = the model's default
    loader_workers: int | None = None  # image-decoding processes (neurflow.ingest.images); None = by folder size and cores


@dataclass
class ClassOutcome:
    """What happened to one class."""

    class_index: int
    class_name: str
    status: str  # computed | skipped | failed
    directory: Path | None = None
    message: str = ""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    node: str = ""  # where it ran (the Ray executor: node IP and id)
    resources: dict[str, float] = field(default_factory=dict)  # what Ray assigned to its task


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "class"


def artifact_dir(out: Path, model_name: str, class_index: int, class_name: str) -> Path:
    """``<out>/<model>/<index:04d>-<name>``."""
    return Path(out) / _slug(model_name) / f"{class_index:04d}-{_slug(class_name)}"


def transitions_dir(directory: Path) -> Path:
    """Where a class's build keeps its per-transition state until its artifact is written."""
    return directory.with_name(directory.name + ".transitions")


def _path_or_name(value: str | None) -> str | None:
    """A model/weights argument as recorded: files (``x.pt``, ``f.py:factory``) made absolute."""
    if value is None:
        return None
    path, colon, factory = value.rpartition(":")
    if colon and path.endswith(".py") and Path(path).is_file():
        return f"{Path(path).absolute()}:{factory}"
    return str(Path(value).absolute()) if Path(value).is_file() else value


# CircuitConfig fields that change speed and memory, not the circuit (beyond float rounding):
# changing them does not make an artifact stale.
SPEED_ONLY = ("batch_size", "ig_batch", "map_cache_mb", "channels_last")


def _settings_key(req: ComputeRequest, layers: Sequence[str], fingerprint: str, preprocess: dict) -> str:
    config = {k: v for k, v in req.config.as_dict().items() if k not in SPEED_ONLY}
    doc = {
        "config": {**config, "scales": list(req.config.scales)},
        "layers": list(layers),
        "model_fingerprint": fingerprint,
        "include_misclassified": req.include_misclassified,
        "preprocess": preprocess,
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _up_to_date(directory: Path, key: str) -> bool:
    run = directory / RUN_FILE
    if not run.is_file() or not is_complete(directory):
        return False
    try:
        return json.loads(run.read_text()).get("settings") == key
    except (OSError, json.JSONDecodeError):
        return False


def _write_json_atomic(path: Path, doc: dict) -> None:
    from neurflow.artifact import write_json_atomic

    write_json_atomic(path, doc)


def _write_thumbnails(circuit: Circuit, images, preprocess, directory: Path, size: int = 96) -> int:
    """Save the exemplar patches as PNG files under ``directory/thumbs``."""
    import torch
    from PIL import Image

    thumbs = directory / "thumbs"
    thumbs.mkdir(exist_ok=True)
    ids = sorted({p for sg in circuit.semantic_groups for p in sg.exemplar_ids} | {p for g in circuit.groups for p in g.exemplar_ids})
    mean = torch.tensor(preprocess.mean or (0.0, 0.0, 0.0)).view(3, 1, 1)
    std = torch.tensor(preprocess.std or (1.0, 1.0, 1.0)).view(3, 1, 1)
    for p in ids:
        x0, y0, x1, y1 = (int(v) for v in circuit.patches.boxes[p])
        img = images[int(circuit.patches.image_index[p])].cpu().float() * std + mean
        crop = (img[:, y0:y1, x0:x1].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR).save(thumbs / f"p{p}.png")
    return len(ids)


@dataclass
class Prepared:
    """What every class of one compute request shares, built once by :func:`prepare`.

    The executors hand this to :func:`compute_class` for each class: the local executor in
    its own process, the Ray executor through the object store (``ray.put`` once, so the model
    and the image index travel to each node once, not once per class).

    Attributes:
        req: the request, its paths made absolute (workers may run in another directory).
        spec: the model (``spec.module``, on ``device``), its preprocessing and names.
        layers: the layers of the circuit, logit layer first.
        data: the image index of the data root (paths only; images are read per class).
        classes: the class indices to compute, in request order.
        key: the settings key recorded in ``run.json``; an artifact with the same key is
            up to date.
        device: where ``spec.module`` lives now.
    """

    req: ComputeRequest
    spec: ModelSpec
    layers: tuple[str, ...]
    data: DataIndex
    classes: list[int]
    key: str
    device: torch.device

    def name(self, class_index: int) -> str:
        """The class's human name."""
        return self.data.names[class_index]

    def directory(self, class_index: int) -> Path:
        """The class's artifact directory."""
        return artifact_dir(self.req.out, self.spec.name, class_index, self.name(class_index))

    def to(self, device: torch.device) -> Prepared:
        """Move the model to ``device`` (in place) and return self."""
        self.spec.module.to(device)
        self.device = device
        return self


def prepare(req: ComputeRequest, *, device: str | torch.device | None = None) -> Prepared:
    """Load the model, check the layers, scan the data and resolve the classes: everything
    that is the same for all classes, and every input error that can be found up front.

    Args:
        req: the request.
        device: where to put the model; None resolves ``req.device``. The Ray executor's
            driver passes CPU (its workers move the model to their own device).

    Raises:
        InputError: bad model, data, layers or classes (before any class is computed).
    """
    import torch

    from .images import resolve_classes
    from .session import open_session, options_of, resolve_device

    req = replace(req, data=Path(req.data).absolute(), out=Path(req.out).absolute(),
                  demo_root=Path(req.demo_root).absolute() if req.demo_root is not None else None)
    device = resolve_device(req.device) if device is None else torch.device(device)
    session = open_session(replace(options_of(req), device=str(device)))  # the one model loader
    spec, model = session.spec, session.module
    layers = tuple(req.layers) if req.layers else spec.layers
    if not layers:
        raise InputError(f"model '{spec.name}' has no layer preset; pass --layers (logit layer first, e.g. fc,layer4.2,layer4.1)")
    try:
        from neurflow.segments import split_model

        split_model(model, layers)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    data = session.data(req.data)
    classes = resolve_classes(req.classes, data, spec.categories)
    key = _settings_key(req, layers, session.fingerprint, spec.preprocess.describe())
    return Prepared(req, spec, layers, data, list(classes), key, device)


def is_up_to_date(prep: Prepared, class_index: int) -> bool:
    """Whether the class's artifact is complete and was computed with ``prep``'s settings."""
    return _up_to_date(prep.directory(class_index), prep.key)


@contextmanager
def _class_lock(directory: Path):
    """Hold an exclusive lock on one class's artifact while it is computed and written.

    Two computations of the same class (a task Ray retried while its first attempt was still
    alive, two runs on one output folder) would otherwise share ``<dir>.partial`` and
    ``<dir>.transitions``. ``flock`` is released by the kernel when its holder dies, so a
    killed worker never leaves the class locked. The lock file is ``.<dir name>.lock`` beside
    the artifact (empty; not an artifact). Without ``fcntl`` (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def compute_class(
    prep: Prepared,
    class_index: int,
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
    reraise: bool = False,
) -> ClassOutcome:
    """Compute and save the artifact of one class (both executors call this).

    Skips a class whose artifact is up to date (checked again under the class's lock, so a
    duplicate of a finished computation does nothing). Writes are atomic (``save_circuit``,
    then ``run.json`` last), so a computation killed at any point leaves either the old
    artifact or none, plus the per-transition state a retry resumes from.

    Args:
        prep: from :func:`prepare`; its model must be on the device to compute on.
        class_index: the class.
        progress: per-stage progress factory (None: silent).
        log: where per-class notes go (unreadable files); the outcome says the rest.
        reraise: let unexpected exceptions (not input errors) propagate instead of turning
            them into a ``failed`` outcome; the Ray executor sets it so that Ray retries them.

    Returns:
        The class's :class:`ClassOutcome` (``computed``, ``skipped`` or ``failed``).
    """
    name = prep.name(class_index)
    directory = prep.directory(class_index)
    try:
        with _class_lock(directory):
            if is_up_to_date(prep, class_index):
                return ClassOutcome(class_index, name, "skipped", directory, "artifact up to date")
            return _compute_class(prep, class_index, progress, log)
    except (NeurflowError, ValueError) as exc:  # ours, and the core's validation errors
        return ClassOutcome(class_index, name, "failed", directory, str(exc))
    except Exception as exc:  # keep going with the other classes; report at the end
        if reraise:
            raise
        if os.environ.get("NEURFLOW_DEBUG"):
            traceback.print_exc()
        return ClassOutcome(class_index, name, "failed", directory, f"{type(exc).__name__}: {exc}")


def _compute_class(prep: Prepared, class_index: int, progress: ProgressFactory | None, log: Callable[[str], None] = print) -> ClassOutcome:
    import torch

    from neurflow import build_circuit, save_circuit, select_class_images
    from neurflow.activations import to_device
    from neurflow.resume import TransitionStore

    from .images import load_class_images

    req, spec, device, key = prep.req, prep.spec, prep.device, prep.key
    model = spec.module
    name = prep.name(class_index)
    directory = prep.directory(class_index)
    started = time.time()
    imgs = load_class_images(prep.data, class_index, spec.preprocess, num_workers=req.loader_workers, pin_memory=device.type == "cuda")
    if imgs.skipped:
        log(f"  {class_index:>5} {name}: skipped {len(imgs.skipped)} unreadable file(s): {', '.join(p for p, _ in imgs.skipped[:3])}")
    tensor = to_device(imgs.tensor, device)  # pinned: an asynchronous copy to a GPU
    used = np.arange(len(imgs.ids))
    if not req.include_misclassified:
        used = select_class_images(model, tensor, class_index)
        if used.size == 0:
            raise InputError(
                f"class '{name}' has no image the model classifies as '{name}' ({len(imgs.ids)} images); "
                "use --include-misclassified to build its circuit from all of its images"
            )
    stage_times: dict[str, float] = {}
    timed = _timed_progress(progress, stage_times)
    resume = TransitionStore(transitions_dir(directory), key)
    circuit = build_circuit(
        model,
        tensor[torch.as_tensor(used, device=device)],
        class_index,
        prep.layers,
        req.config,
        model_name=spec.name,
        class_name=name,
        image_ids=[imgs.ids[i] for i in used],
        progress=timed,  # type: ignore[arg-type]
        resume=resume,
    )
    if (directory / RUN_FILE).exists():
        (directory / RUN_FILE).unlink()
    save_circuit(circuit, directory)
    resume.clear()  # the artifact is on disk: the per-transition state is no longer needed
    n_thumbs = _write_thumbnails(circuit, tensor[torch.as_tensor(used, device=device)], spec.preprocess, directory) if req.thumbnails else 0
    finished = time.time()
    run = {
        "uid": f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{hashlib.sha256((str(directory) + str(started)).encode()).hexdigest()[:8]}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "seconds": round(finished - started, 3),
        "settings": key,
        "device": str(device),
        "weights": spec.weights,
        # provenance: what later commands (debug, evaluate, label) load by default
        "model_arg": _path_or_name(req.model),
        "weights_arg": str(spec.weights_file) if spec.weights_file is not None else _path_or_name(req.weights),
        "data_root": str(Path(req.data).absolute()),
        "demo_root": str(Path(req.demo_root).absolute()) if req.demo_root is not None else None,
        "model_fingerprint": circuit.model_fingerprint,
        "data_fingerprint": circuit.data_fingerprint,
        "preprocess": json.dumps(spec.preprocess.describe()),
        "config": json.dumps(req.config.as_dict()),
        "include_misclassified": req.include_misclassified,
        "n_images": len(imgs.ids),
        "n_images_used": int(used.size),
        "n_skipped_files": len(imgs.skipped),
        "n_thumbnails": n_thumbs,
        "stages": json.dumps({k: round(v, 3) for k, v in stage_times.items()}),
        **{f"version_{k}": v for k, v in circuit.environment.items()},
    }
    _write_json_atomic(directory / RUN_FILE, run)
    return ClassOutcome(class_index, name, "computed", directory, f"{int(used.size)} images", finished - started, stage_times)


def compute(req: ComputeRequest, *, progress: ProgressFactory | None = None, log: Callable[[str], None] = print) -> list[ClassOutcome]:
    """Compute and save the circuit artifact of every requested class, one after the other
    in this process (the ``local`` executor; :mod:`neurflow.ingest.executor` has the others).

    Returns:
        One :class:`ClassOutcome` per class (``computed``, ``skipped`` or ``failed``).

    Raises:
        InputError: bad model, data, layers or classes (before any class is computed).
    """
    prep = prepare(req)
    outcomes = []
    for class_index in prep.classes:
        outcome = compute_class(prep, class_index, progress=progress, log=log)
        if outcome.status == "skipped":
            log(f"  {class_index:>5} {outcome.class_name}: artifact up to date, skipped")
        elif outcome.status == "failed":
            log(f"  {class_index:>5} {outcome.class_name}: FAILED: {outcome.message}")
        outcomes.append(outcome)
    return outcomes


def _timed_progress(progress: ProgressFactory | None, times: dict[str, float]) -> ProgressFactory:
    class _Bar:
        def __init__(self, stage: str, total: int) -> None:
            self.stage, self.t0 = stage.split(" ")[0], time.perf_counter()
            self.inner = progress(stage, total) if progress is not None else None

        def update(self, n: int = 1) -> None:
            if self.inner is not None:
                self.inner.update(n)  # type: ignore[attr-defined]

        def close(self) -> None:
            times[self.stage] = times.get(self.stage, 0.0) + time.perf_counter() - self.t0
            if self.inner is not None:
                self.inner.close()  # type: ignore[attr-defined]

    return _Bar


def find_artifacts(paths: Sequence[Path]) -> list[Path]:
    """Every artifact directory at or below ``paths`` (sorted); leftovers ``*.partial`` ignored.

    Raises:
        InputError: a path does not exist, or nothing was found.
    """
    found: set[Path] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"artifact path '{p}' does not exist")
        candidates = [p / "circuit.json"] if (p / "circuit.json").is_file() else sorted(p.rglob("circuit.json"))
        for c in candidates:
            if not c.parent.name.endswith((".partial", ".old")):
                found.add(c.parent)
    if not found:
        raise InputError(f"no circuit artifacts found under {', '.join(str(p) for p in paths)}")
    return sorted(found)


@dataclass
class LoadOutcome:
    directory: Path
    class_uid: str
    status: str  # loaded | failed
    rows: dict[str, int] = field(default_factory=dict)
    relationships: int = 0
    seconds: float = 0.0
    message: str = ""


def read_artifact(directory: Path) -> tuple[Circuit, dict | None, dict[int, str]]:
    """The circuit, its run record and its thumbnails (patch id -> path)."""
    circuit = load_circuit(directory)
    run = None
    if (directory / RUN_FILE).is_file():
        run = json.loads((directory / RUN_FILE).read_text())
    thumbs = {}
    if (directory / "thumbs").is_dir():
        for f in (directory / "thumbs").glob("p*.png"):
            thumbs[int(f.stem[1:])] = str(f.resolve())
    return circuit, run, thumbs


def load(
    driver,
    database: str | None,
    directories: Sequence[Path],
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
    batch_size: int = 10_000,
) -> list[LoadOutcome]:
    """Load artifacts into the graph, replacing each class's subgraph.

    Incomplete or corrupt artifacts are reported and skipped; database errors stop the load
    (raised as DatabaseError) since every later class would fail the same way.
    """
    from .graph.rows import artifact_rows
    from .graph.writer import ensure_schema, write_class

    ensure_schema(driver, database)
    outcomes = []
    for directory in directories:  # streaming: one class's rows in memory at a time
        try:
            rows = artifact_rows(directory)
        except ArtifactError as exc:
            outcomes.append(LoadOutcome(directory, "", "failed", message=str(exc)))
            log(f"  {directory}: FAILED: {exc}")
            continue
        total = sum(len(v) for v in rows.rows.values())
        bar = progress(f"loading {Path(directory).name}", total) if progress is not None else None
        try:
            stats = write_class(driver, database, rows, progress=bar, batch_size=batch_size)
        finally:
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]
        outcomes.append(LoadOutcome(directory, rows.cls, "loaded", stats.rows, stats.relationships, stats.seconds))
    return outcomes


def _run_props(run: dict | None) -> dict | None:
    if run is None:
        return None
    keep = {k: v for k, v in run.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return keep
