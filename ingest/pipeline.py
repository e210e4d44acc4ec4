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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from neurflow.artifact import is_complete, load_circuit
from neurflow.circuit import Circuit, CircuitConfig

from .errors import ArtifactError, InputError, NeurflowError

__all__ = ["ComputeRequest", "ClassOutcome", "artifact_dir", "compute", "find_artifacts", "load", "RUN_FILE"]

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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "class"


def artifact_dir(out: Path, model_name: str, class_index: int, class_name: str) -> Path:
    """``<out>/<model>/<index:04d>-<name>``."""
    return Path(out) / _slug(model_name) / f"{class_index:04d}-{_slug(class_name)}"


def transitions_dir(directory: Path) -> Path:
    """Where a class's build keeps its per-transition state until its artifact is written."""
    return directory.with_name(directory.name + ".transitions")


def resolve_device(name: str):
    """``auto`` -> CUDA when available, else CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"unknown device '{name}'; use auto, cpu or cuda")
    return torch.device(name)


# CircuitConfig fields that change speed and memory, not the circuit (beyond float rounding):
# changing them does not make an artifact stale.
SPEED_ONLY = ("batch_size", "ig_batch", "map_cache_mb", "channels_last")


def _settings_key(req: ComputeRequest, layers: Sequence[str], fingerprint: str, preprocess: dict) -> str:
    config = {k: v for k, v in asdict(req.config).items() if k not in SPEED_ONLY}
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
        Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR).save(thumbs / f"p{p}.png")
    return len(ids)


def compute(req: ComputeRequest, *, progress: ProgressFactory | None = None, log: Callable[[str], None] = print) -> list[ClassOutcome]:
    """Compute and save the circuit artifact of every requested class.

    Returns:
        One :class:`ClassOutcome` per class (``computed``, ``skipped`` or ``failed``).

    Raises:
        InputError: bad model, data, layers or classes (before any class is computed).
    """
    import torch

    from neurflow import build_circuit, save_circuit, select_class_images
    from neurflow.fingerprint import model_fingerprint
    from neurflow.resume import TransitionStore

    from .images import load_class_images, resolve_classes, scan_data
    from .models import load_model

    device = resolve_device(req.device)
    spec = load_model(req.model, req.weights, input_size=req.input_size, mean=req.mean, std=req.std, normalize=req.normalize, demo_root=req.demo_root)
    layers = tuple(req.layers) if req.layers else spec.layers
    if not layers:
        raise InputError(f"model '{spec.name}' has no layer preset; pass --layers (logit layer first, e.g. fc,layer4.2,layer4.1)")
    model = spec.module.to(device)
    try:
        from neurflow.segments import split_model

        split_model(model, layers)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    with torch.no_grad():
        size = spec.preprocess.input_size
        num_classes = int(model(torch.zeros(1, 3, size, size, device=device)).shape[1])
    data = scan_data(req.data, spec.categories, num_classes)
    classes = resolve_classes(req.classes, data, spec.categories)
    fingerprint = model_fingerprint(model)
    key = _settings_key(req, layers, fingerprint, spec.preprocess.describe())
    outcomes: list[ClassOutcome] = []
    for class_index in classes:
        name = data.names[class_index]
        directory = artifact_dir(req.out, spec.name, class_index, name)
        if _up_to_date(directory, key):
            outcomes.append(ClassOutcome(class_index, name, "skipped", directory, "artifact up to date"))
            log(f"  {class_index:>5} {name}: artifact up to date, skipped")
            continue
        started = time.time()
        try:
            imgs = load_class_images(data, class_index, spec.preprocess)
            if imgs.skipped:
                log(f"  {class_index:>5} {name}: skipped {len(imgs.skipped)} unreadable file(s): {', '.join(p for p, _ in imgs.skipped[:3])}")
            tensor = imgs.tensor.to(device)
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
                layers,
                req.config,
                model_name=spec.name,
                class_name=name,
                image_ids=[imgs.ids[i] for i in used],
                progress=timed,
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
                "model_fingerprint": circuit.model_fingerprint,
                "data_fingerprint": circuit.data_fingerprint,
                "preprocess": json.dumps(spec.preprocess.describe()),
                "config": json.dumps({**asdict(req.config), "scales": list(req.config.scales)}),
                "include_misclassified": req.include_misclassified,
                "n_images": len(imgs.ids),
                "n_images_used": int(used.size),
                "n_skipped_files": len(imgs.skipped),
                "n_thumbnails": n_thumbs,
                "stages": json.dumps({k: round(v, 3) for k, v in stage_times.items()}),
                **{f"version_{k}": v for k, v in circuit.environment.items()},
            }
            _write_json_atomic(directory / RUN_FILE, run)
            outcomes.append(ClassOutcome(class_index, name, "computed", directory, f"{int(used.size)} images", finished - started, stage_times))
        except NeurflowError as exc:
            outcomes.append(ClassOutcome(class_index, name, "failed", directory, str(exc)))
            log(f"  {class_index:>5} {name}: FAILED: {exc}")
        except ValueError as exc:  # the core's validation errors
            outcomes.append(ClassOutcome(class_index, name, "failed", directory, str(exc)))
            log(f"  {class_index:>5} {name}: FAILED: {exc}")
        except Exception as exc:  # keep going with the other classes; report at the end
            outcomes.append(ClassOutcome(class_index, name, "failed", directory, f"{type(exc).__name__}: {exc}"))
            log(f"  {class_index:>5} {name}: FAILED: {type(exc).__name__}: {exc}")
            if os.environ.get("NEURFLOW_DEBUG"):
                traceback.print_exc()
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
    batch_size: int = 2000,
) -> list[LoadOutcome]:
    """Load artifacts into the graph, replacing each class's subgraph.

    Incomplete or corrupt artifacts are reported and skipped; database errors stop the load
    (raised as DatabaseError) since every later class would fail the same way.
    """
    from .graph_rows import circuit_rows
    from .graph_writer import ensure_schema, write_class
    from .labelling.store import read_class_labels

    ensure_schema(driver, database)
    outcomes = []
    for directory in directories:
        try:
            circuit, run, thumbs = read_artifact(directory)
        except ArtifactError as exc:
            outcomes.append(LoadOutcome(directory, "", "failed", message=str(exc)))
            log(f"  {directory}: FAILED: {exc}")
            continue
        # labels stored beside the artifact come back only when made for this very artifact
        rows = circuit_rows(circuit, run=_run_props(run), artifact_dir=directory.resolve(), thumbnails=thumbs, labels=read_class_labels(directory))
        total = sum(len(v) for v in rows.rows.values())
        bar = progress(f"loading {circuit.class_name}", total) if progress is not None else None
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
