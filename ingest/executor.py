"""Where the classes of one compute request run: here, one after the other, or on Ray.

``neurflow compute`` and ``neurflow ingest`` compute one artifact per class; classes are
independent, so they can run side by side. Two executors:

* ``local`` (the default): :func:`neurflow.ingest.pipeline.compute`'s loop, in this process.
* ``ray``: one Ray task per class, with ``num_cpus=cpus_per_class`` and
  ``num_gpus=gpus_per_class`` (fractional: 0.25 puts four classes on one GPU). The driver
  (this process) loads the model, checks the inputs and scans the image index once
  (:func:`~neurflow.ingest.pipeline.prepare`), puts them into the object store once
  (``ray.put``), and submits the tasks; each task moves the model to its device and calls
  :func:`~neurflow.ingest.pipeline.compute_class`, the same function the local executor calls,
  so both write the same bytes.

Why tasks, not actors. A task receives the prepared model by reference; what it pays per
class is deserialising the model from the node's shared-memory object store (the object
crosses the network once per node) and moving it to its device, not building it and reading
its weights file. Ray keeps worker processes alive between tasks, so ``import torch`` is
paid once per worker too. An actor would save only that deserialisation, which is small next
to one class's computation (``benchmarks/bench_ray.py`` measures both; results in
``benchmarks/results/ray.json``), and in exchange a dead actor would take its queue of
classes with it and need ``max_restarts`` plus ``max_task_retries`` bookkeeping. With tasks,
Ray's own retry (``max_retries``) re-runs exactly the class that was lost.

Faults. Each class's artifact is written atomically by the worker (``save_circuit``, then
``run.json`` last) under a per-class lock, and a class whose artifact is complete and up to
date is skipped, so a retried or duplicated task cannot corrupt anything and a re-run
resumes. A worker that dies (killed, out of memory) is retried up to ``max_retries`` times
by Ray, resuming from the per-transition state of its first attempt; an unexpected
exception in a task is retried the same way (``retry_exceptions``). Input errors of one
class (no readable image, no correctly classified image) are not retried: they are
reported as a ``failed`` outcome while the other classes go on.

Shared storage. Workers read the images from ``req.data`` and write artifacts to
``req.out`` themselves: on a multi-node cluster both must be paths that every node sees
(a shared file system: NFS, a Kubernetes ReadWriteMany volume, a cloud file store), mounted
at the same place. The driver alone writes to the graph: :func:`iter_compute` yields each
class as soon as its artifact is complete (``ray.wait``), so ``ingest`` can load it while
the others are still computing.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .pipeline import ClassOutcome, ComputeRequest, ProgressFactory, compute_class, is_up_to_date, prepare

if TYPE_CHECKING:
    from .pipeline import Prepared

__all__ = ["EXECUTORS", "ExecutorOptions", "compute", "iter_compute", "summary_lines"]

#: The executor names (``--executor``).
EXECUTORS = ("local", "ray")
_USER_MODEL_PREFIX = "_neurflow_user_model_"  # models.py's module names of path/to/file.py:factory models


@dataclass(frozen=True)
class ExecutorOptions:
    """How to run the classes of a compute request.

    Attributes:
        executor: ``local`` (this process, one class after the other) or ``ray``.
        ray_address: None starts a Ray instance on this machine for the run (stopped
            afterwards); ``auto`` joins the cluster this machine belongs to (``ray start``);
            ``ray://host:10001`` connects through Ray Client. A Ray already initialised in this
            process (``ray.init`` by the caller) is used as it is.
        gpus_per_class: ``num_gpus`` of each class's task; fractional values share a GPU
            (0.25: four classes per GPU). 0 computes on CPU.
        cpus_per_class: ``num_cpus`` of each class's task; the task runs torch with that
            many threads (at least one).
        max_retries: how often Ray re-runs a class whose worker died or raised an
            unexpected error, before the class is reported as failed.
    """

    executor: str = "local"
    ray_address: str | None = None
    gpus_per_class: float = 0.0
    cpus_per_class: float = 1.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise InputError(f"unknown executor '{self.executor}'; use {' or '.join(EXECUTORS)}")
        if self.gpus_per_class < 0 or self.cpus_per_class < 0:
            raise InputError(f"--gpus-per-class and --cpus-per-class must be >= 0, got {self.gpus_per_class} and {self.cpus_per_class}")
        if self.gpus_per_class > 1 and self.gpus_per_class != int(self.gpus_per_class):
            raise InputError(f"--gpus-per-class above 1 must be a whole number (Ray's rule), got {self.gpus_per_class}")
        if self.max_retries < 0:
            raise InputError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.executor == "local" and (self.ray_address is not None or self.gpus_per_class or self.cpus_per_class != 1.0):
            raise InputError("--ray-address, --gpus-per-class and --cpus-per-class need --executor ray")


def compute(
    req: ComputeRequest,
    options: ExecutorOptions | None = None,
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
    on_class: Callable[[ClassOutcome], None] | None = None,
) -> list[ClassOutcome]:
    """Compute the artifacts of every requested class with the chosen executor.

    Args:
        req: what to compute.
        options: the executor and its settings (default: local).
        progress: progress factory (``progress(stage, total)``): per-stage bars with the local
            executor, one bar over the classes with Ray.
        log: where the one line per completed class (and per-class notes) go.
        on_class: called in this process with each class's outcome as soon as the class is
            done, before the next one is awaited (``ingest`` loads the artifact here).

    Returns:
        One :class:`~neurflow.ingest.pipeline.ClassOutcome` per class, in completion order.

    Raises:
        InputError: bad model, data, layers, classes or executor settings, or Ray asked for
            but not installed (before any class is computed).
    """
    outcomes = []
    for outcome in iter_compute(req, options, progress=progress, log=log):
        outcomes.append(outcome)
        if on_class is not None:
            on_class(outcome)
    return outcomes


def iter_compute(
    req: ComputeRequest,
    options: ExecutorOptions | None = None,
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[ClassOutcome]:
    """Yield each class's outcome as soon as the class is done (see :func:`compute`).

    Input errors of the whole request are raised at the first ``next()``. Closing the
    iterator early cancels the Ray tasks still pending.
    """
    options = options or ExecutorOptions()
    if options.executor == "ray":
        yield from _iter_ray(req, options, progress, log)
    else:
        yield from _iter_local(req, progress, log)


def summary_lines(outcomes: Sequence[ClassOutcome]) -> list[str]:
    """A closing summary: counts, then one line per class with its status, time and node."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("computed", "skipped", "failed")}
    lines = [f"{counts['computed']} computed, {counts['skipped']} up to date, {counts['failed']} failed"]
    for o in sorted(outcomes, key=lambda o: o.class_index):
        where = f" on {o.node}" if o.node else ""
        what = f": {o.message}" if o.status == "failed" else ""
        lines.append(f"  {o.class_index:>5} {o.class_name}: {o.status} in {o.seconds:.1f} s{where}{what}")
    return lines


def _class_line(o: ClassOutcome) -> str:
    where = f" on {o.node}" if o.node else ""
    if o.status == "failed":
        return f"  {o.class_index:>5} {o.class_name}: FAILED{where}: {o.message}"
    if o.status == "skipped":
        return f"  {o.class_index:>5} {o.class_name}: artifact up to date, skipped"
    return f"  {o.class_index:>5} {o.class_name}: computed ({o.message}) in {o.seconds:.1f} s{where}"


# --- local ----------------------------------------------------------------------------------


def _iter_local(req: ComputeRequest, progress: ProgressFactory | None, log: Callable[[str], None]) -> Iterator[ClassOutcome]:
    prep = prepare(req)
    node = platform.node()
    for class_index in prep.classes:
        outcome = compute_class(prep, class_index, progress=progress, log=log)
        outcome.node = node
        log(_class_line(outcome))
        yield outcome


# --- ray ------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--executor ray needs Ray, which is not installed: pip install 'neurflow[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def _ray_compute_class(prep: Prepared, class_index: int) -> tuple[ClassOutcome, list[str]]:
    """The body of one class's Ray task: runs on a worker, returns the outcome and its notes.

    ``prep`` arrives from the object store (Ray resolves the reference passed to the task).
    The model goes to the worker's own device (``auto``: the GPU Ray assigned, if any).
    Unexpected exceptions propagate so that Ray retries the task.
    """
    import ray
    import torch

    from .session import resolve_device

    context = ray.get_runtime_context()
    assigned = {k: float(v) for k, v in context.get_assigned_resources().items()}
    # torch's threads = the CPUs of this task (Ray's OMP_NUM_THREADS is set once per worker
    # process, and a worker process runs many tasks)
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1.0))))
    device = resolve_device(prep.req.device)
    if prep.device != device:
        prep.to(device)
    notes: list[str] = []
    outcome = compute_class(prep, class_index, log=notes.append, reraise=True)
    outcome.node = f"{ray.util.get_node_ip_address()} (node {context.get_node_id()[:8]})"
    outcome.resources = assigned
    return outcome, notes


_REMOTE: dict[str, Any] = {}  # ray.remote(_ray_compute_class), made once per process


def _remote(ray: Any) -> Any:
    if "task" not in _REMOTE:
        _REMOTE["task"] = ray.remote(_ray_compute_class)
    return _REMOTE["task"]


def _init_ray(ray: Any, options: ExecutorOptions) -> bool:
    """Connect to Ray as the options say; True when this call started (and so must stop) it."""
    if ray.is_initialized():
        return False
    try:
        if options.ray_address is None:  # a fresh instance on this machine, whatever else runs here
            ray.init(address="local", include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=options.ray_address, logging_level="WARNING")
    except ConnectionError as exc:
        raise InputError(f"cannot reach the Ray cluster at '{options.ray_address}': {exc}") from None
    return True


def _check_feasible(ray: Any, options: ExecutorOptions, log: Callable[[str], None], strict: bool) -> None:
    """A task no node can ever hold would wait forever: refuse it up front (a cluster that may
    grow, i.e. one we joined, only gets a warning)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= options.cpus_per_class and r.get("GPU", 0) >= options.gpus_per_class for r in nodes):
        return
    have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no node"
    message = (f"no Ray node has {options.cpus_per_class:g} CPU and {options.gpus_per_class:g} GPU for one class "
               f"(nodes: {have}); lower --cpus-per-class/--gpus-per-class")
    if strict:
        raise InputError(message)
    log(f"warning: {message}, or wait for the cluster to grow")


def _pickle_user_models_by_value(ray: Any, prep: Prepared) -> None:
    """Models from ``path/to/file.py:factory`` live in a module that exists only in this
    process: ship their code with the model (cloudpickle by value) so workers can load it."""
    for name in {type(m).__module__ for m in prep.spec.module.modules()}:
        if name.startswith(_USER_MODEL_PREFIX) and name in sys.modules:
            ray.cloudpickle.register_pickle_by_value(sys.modules[name])


def _failure(exc: BaseException) -> str:
    """One line for a task that failed for good (its last attempt's error)."""
    cause = getattr(exc, "cause", None)
    if cause is not None and not isinstance(cause, type(exc)):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _iter_ray(req: ComputeRequest, options: ExecutorOptions, progress: ProgressFactory | None, log: Callable[[str], None]) -> Iterator[ClassOutcome]:
    ray = _import_ray()
    if req.device.startswith("cuda") and not options.gpus_per_class:
        raise InputError("--device cuda with --executor ray needs --gpus-per-class > 0 (Ray hides GPUs from tasks that reserve none)")
    started_here = _init_ray(ray, options)
    pending: dict[Any, tuple[int, str, float]] = {}
    try:
        _check_feasible(ray, options, log, strict=options.ray_address is None)
        prep = prepare(req, device="cpu")  # the workers move the model to their own device
        todo = []
        for class_index in prep.classes:
            if is_up_to_date(prep, class_index):
                outcome = ClassOutcome(class_index, prep.name(class_index), "skipped", prep.directory(class_index), "artifact up to date")
                log(_class_line(outcome))
                yield outcome
            else:
                todo.append(class_index)
        if not todo:
            return
        _pickle_user_models_by_value(ray, prep)
        prep_ref = ray.put(prep)  # once: every task reads it from its node's object store
        task = _remote(ray)
        resources = {"num_cpus": options.cpus_per_class, "num_gpus": options.gpus_per_class}
        for class_index in todo:
            ref = task.options(
                **resources,
                max_retries=options.max_retries,
                retry_exceptions=True,
                name=f"neurflow class {class_index} {prep.name(class_index)}",
            ).remote(prep_ref, class_index)
            pending[ref] = (class_index, prep.name(class_index), time.time())
        bar = progress(f"classes on ray ({len(todo)})", len(todo)) if progress is not None else None
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    class_index, name, submitted = pending.pop(ref)
                    try:
                        outcome, notes = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # died or raised on every attempt
                        notes = []
                        outcome = ClassOutcome(class_index, name, "failed", prep.directory(class_index),
                                               f"{_failure(exc)} (after {options.max_retries + 1} attempt(s))", time.time() - submitted)
                    for line in notes:
                        log(line)
                    log(_class_line(outcome))
                    if bar is not None:
                        bar.update(1)  # type: ignore[attr-defined]
                    yield outcome
        finally:
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]
    finally:
        for ref in pending:  # the caller stopped early (or an error): do not leave work behind
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
