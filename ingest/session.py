"""A model session: the classifier, its preprocessing and its data index, loaded once.

``compute`` builds artifacts from options; ``debug``, ``evaluate`` and ``label`` work on
classes that already have artifacts, and every artifact's ``run.json`` records how it was
made (model, weights, data root, preprocessing). :func:`resolve_options` fills whatever
the user did not say from that record, so ``neurflow debug`` right after ``neurflow
ingest`` or ``make demo`` needs no model or data options; what the user does say
overrides it, and :func:`open_session` then refuses weights whose fingerprint differs from
the artifact's (a clear error, not a silently different model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neurflow.errors import ArtifactError, InputError

__all__ = ["ModelOptions", "ModelSession", "Provenance", "resolve_device", "read_provenance", "resolve_options", "open_session", "data_root"]


@dataclass(frozen=True)
class ModelOptions:
    """What the user said about the model; None = not said (a default or the provenance)."""

    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    input_size: int | None = None
    resize: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: bool | None = None
    demo_root: Path | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """The preprocessing and location keywords of :func:`neurflow.ingest.models.load_model`
        (and of :class:`~neurflow.ingest.pipeline.ComputeRequest`)."""
        return {"input_size": self.input_size, "mean": self.mean, "std": self.std, "normalize": self.normalize is not False,
                "demo_root": self.demo_root, "resize": self.resize}


@dataclass(frozen=True)
class Provenance:
    """How one artifact was made, as its ``run.json`` records it.

    ``model``/``weights``/``data`` are the values given to ``compute`` (absolute paths for
    files); artifacts written before they were recorded give None for them.
    """

    model: str | None
    weights: str | None
    data: Path | None
    demo_root: Path | None
    preprocess: dict[str, Any] | None
    model_fingerprint: str | None


def resolve_device(name: str):
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} was requested but no CUDA device is available")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise InputError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    return torch.device(name)


def read_provenance(directory: Path) -> Provenance:
    """The provenance of one artifact directory (its ``run.json``)."""
    path = Path(directory) / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{directory} has no run.json (an artifact from 'neurflow compute' has one); pass --model, --weights and --data") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} cannot be read ({exc})") from None
    weights = run.get("weights_arg")
    desc = str(run.get("weights") or "")
    if weights is None and desc.startswith("torchvision:"):  # older artifacts: "torchvision:ResNet50_Weights.IMAGENET1K_V2"
        weights = desc.rpartition(".")[2]
    pre = run.get("preprocess")
    return Provenance(
        model=run.get("model_arg"),
        weights=weights,
        data=Path(run["data_root"]) if run.get("data_root") else None,
        demo_root=Path(run["demo_root"]) if run.get("demo_root") else None,
        preprocess=json.loads(pre) if isinstance(pre, str) else pre,
        model_fingerprint=run.get("model_fingerprint"),
    )


def resolve_options(opts: ModelOptions, prov: Provenance, model_name: str) -> ModelOptions:
    """``opts`` with every field the user left out taken from the artifact's provenance.

    Args:
        model_name: the circuit's model name (used when the provenance predates ``model_arg``).
    """
    pre = prov.preprocess or {}
    model = opts.model or prov.model or model_name
    same_model = opts.model is None or opts.model == (prov.model or model_name)
    updates: dict[str, Any] = {"model": model}
    if same_model:
        if opts.weights is None:
            updates["weights"] = prov.weights
        if opts.demo_root is None:
            updates["demo_root"] = prov.demo_root
        if pre:
            if opts.input_size is None:
                updates["input_size"] = int(pre["input_size"])
            if opts.resize is None and opts.input_size in (None, int(pre["input_size"])):  # the recorded resize belongs to its input size
                policy = pre.get("policy", "shorter")
                updates["resize"] = f"shorter:{int(pre['resize'])}" if policy == "shorter" else policy
            if opts.normalize is None and opts.mean is None and opts.std is None:
                if pre.get("mean") is None:
                    updates["normalize"] = False
                else:
                    updates["mean"], updates["std"] = tuple(pre["mean"]), tuple(pre["std"])
    return replace(opts, **updates)


def data_root(given: Path | None, provenances: list[Provenance]) -> Path:
    """``--data`` if given, else the one data root the artifacts were computed from."""
    if given is not None:
        return Path(given)
    roots = {p.data for p in provenances if p.data is not None}
    if len(roots) == 1:
        return roots.pop()
    if not roots:
        raise InputError("the artifacts do not record their data root (computed by an older NeurFlow); pass --data")
    raise InputError(f"the artifacts were computed from {len(roots)} data roots ({', '.join(sorted(map(str, roots)))}); pass --data")


@dataclass
class ModelSession:
    """A loaded classifier on its device, with what every command needs to know about it.

    Attributes:
        options: the options it was loaded with (after provenance).
        spec: :class:`neurflow.ingest.models.ModelSpec` (name, layers, preprocessing, ...).
        module: the classifier, in eval mode, on ``device``.
        fingerprint: the weights' fingerprint (compared with every artifact's).
        num_classes: width of the logit layer.
    """

    options: ModelOptions
    spec: Any
    module: Any
    device: Any
    fingerprint: str
    num_classes: int
    _data: dict[Path, Any] = field(default_factory=dict, repr=False)

    def data(self, root: Path):
        """The data index of an ImageFolder root (scanned once per session)."""
        from .images import scan_data

        root = Path(root)
        if root not in self._data:
            self._data[root] = scan_data(root, self.spec.categories, self.num_classes)
        return self._data[root]


def open_session(opts: ModelOptions) -> ModelSession:
    """Load the model named by ``opts`` once: module on its device, fingerprint, logit width."""
    import torch

    from neurflow.fingerprint import model_fingerprint

    from .models import load_model

    if opts.model is None:
        raise InputError("no model given; pass --model (and --weights)")
    device = resolve_device(opts.device)
    spec = load_model(opts.model, opts.weights, **opts.load_kwargs())
    module = spec.module.to(device).eval()
    with torch.no_grad():
        size = spec.preprocess.input_size
        num_classes = int(module(torch.zeros(1, 3, size, size, device=device)).shape[1])
    return ModelSession(opts, spec, module, device, model_fingerprint(module), num_classes)


@dataclass
class ArtifactSet:
    """Artifacts of one model, with the session that loaded it and their data root.

    Attributes:
        session: the model, loaded once (options: the user's, else the provenance).
        data: the ImageFolder root the artifacts were computed from (or ``--data``).
        circuits: class index -> (circuit, artifact directory); the artifact of the session's
            weights where a class has one (callers check ``model_fingerprint``).
    """

    session: ModelSession
    data: Path
    circuits: dict[int, tuple[Any, Path]]


def open_artifacts(directories: list[Path], opts: ModelOptions, data: Path | None = None) -> ArtifactSet:
    """Load the model once for artifacts of one model, the user's options overriding their provenance.

    Raises:
        ArtifactError: no artifact; an unreadable one.
        InputError: artifacts of several models (pass ``--model``), weights whose fingerprint
            differs from an artifact's, no recorded data root and no ``--data``.
    """
    from .pipeline import read_artifact

    found = []
    for d in directories:
        circuit, _, _ = read_artifact(d)
        found.append((circuit, Path(d)))
    if not found:
        raise ArtifactError("no circuit artifact found")
    names = sorted({c.model_name for c, _ in found})
    if opts.model is None and len(names) > 1:
        raise InputError(f"the artifacts are of several models ({', '.join(names)}); pass --model (and --weights) to choose one")
    first = found[0] if opts.model is None else next(((c, d) for c, d in found if opts.model in (c.model_name, read_provenance(d).model)), found[0])
    prov = read_provenance(first[1])
    session = open_session(resolve_options(opts, prov, first[0].model_name))
    mine = [(c, d) for c, d in found if c.model_name == session.spec.name]
    if not mine:
        raise ArtifactError(f"no artifact of model '{session.spec.name}' among {len(found)} artifact(s)")
    circuits: dict[int, tuple[Any, Path]] = {}
    for circuit, directory in mine:  # one per class: of these weights when there is one
        held = circuits.get(circuit.class_index)
        if held is None or held[0].model_fingerprint != session.fingerprint:
            circuits[circuit.class_index] = (circuit, directory)
    root = data_root(data, [read_provenance(d) for _, d in circuits.values()])
    return ArtifactSet(session, root, circuits)


def options_of(req: Any) -> ModelOptions:
    """The model options of a :class:`~neurflow.ingest.pipeline.ComputeRequest`."""
    return ModelOptions(req.model, req.weights, req.device, req.input_size, req.resize, req.mean, req.std, req.normalize, req.demo_root)


def open_request_artifacts(req: Any) -> ArtifactSet:
    """The artifacts a compute request produced (under ``req.out``), with its model loaded."""
    from .pipeline import find_artifacts

    return open_artifacts(find_artifacts([Path(req.out)]), options_of(req), Path(req.data))


def locate_artifacts(paths: list[Path], conn: Any | None = None, *, hint: str = "--out") -> list[Path]:
    """Where the classes' artifacts are: ``paths`` if given; else ``NEURFLOW_ARTIFACTS`` or
    ``./artifacts`` when it exists; else the folders the graph's Class nodes record (the
    ``classes`` query), so commands on loaded classes need no artifact option.

    Raises:
        InputError: none of these gives an artifact (``hint`` names the option to use).
        ArtifactError: the graph names artifact folders that are not on this machine.
    """
    import os

    from .pipeline import find_artifacts

    if paths:
        return find_artifacts(paths)
    default = Path(os.environ.get("NEURFLOW_ARTIFACTS") or "artifacts")
    if default.exists():
        return find_artifacts([default])
    if conn is not None:
        from neurflow.queries.registry import run_query

        recorded = [Path(r["artifact"]) for r in run_query(conn.driver, "classes", {}, database=conn.database) if r["artifact"] and r["complete"]]
        present = [p for p in recorded if p.is_dir()]
        if present:
            return present
        if recorded:
            raise ArtifactError(f"the graph's classes were loaded from artifact folders that are not here (e.g. {recorded[0]}); pass --out")
    raise InputError(f"give at least one artifact directory ({hint} or NEURFLOW_ARTIFACTS): '{default}' does not exist and no loaded class names one")
