"""``neurflow compute``: circuit artifacts for the given classes (no database)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .options import artifacts_option, circuit_config_from, circuit_options, echo_err, handle_errors, model_options, model_options_from, quiet_option

__all__ = ["compute", "compute_options", "executor_options", "request_from", "executor_from", "run_compute"]

DEFAULT_OUT = Path("artifacts")


def compute_options(fn):
    """Everything that says what to compute: data, classes, layers, model, circuit config."""
    for opt in reversed(
        [
            click.option("--data", type=click.Path(path_type=Path), required=True, help="ImageFolder root: one folder of images per class."),
            click.option("--classes", default="all", show_default=True, help="'all', or comma-separated class indices or names."),
            click.option("--layers", default=None, help="Comma-separated layer names, logit layer first (default: the model's preset)."),
            click.option("--include-misclassified", is_flag=True, help="Use all of a class's images, not only those the model predicts as the class."),
            model_options(default_model="resnet50"),
            circuit_options,
            click.option("--loader-workers", type=int, default=None, help="Processes decoding a class's images [default: by folder size and cores]."),
            executor_options,
            artifacts_option,
            quiet_option,
        ]
    ):
        fn = opt(fn)
    return fn


def executor_options(fn):
    """``--executor local|ray`` and the Ray options, defaults from :class:`~neurflow.ingest.executor.ExecutorOptions`."""
    from dataclasses import fields

    from ..executor import EXECUTORS, ExecutorOptions

    default = {f.name: f.default for f in fields(ExecutorOptions)}
    for opt in reversed(
        [
            click.option("--executor", type=click.Choice(EXECUTORS), default=default["executor"], show_default=True,
                         help="local: one class after the other in this process; ray: one Ray task per class (pip install 'neurflow[ray]')."),
            click.option("--ray-address", default=default["ray_address"], help="With --executor ray: none starts Ray here; 'auto' joins this machine's cluster; ray://host:10001."),
            click.option("--gpus-per-class", type=float, default=default["gpus_per_class"], show_default=True, help="Ray num_gpus per class (0.25 = four classes per GPU)."),
            click.option("--cpus-per-class", type=float, default=default["cpus_per_class"], show_default=True, help="Ray num_cpus per class (torch threads in the task)."),
            click.option("--max-retries", type=int, default=default["max_retries"], show_default=True, help="Re-runs of a class whose Ray worker died, before it is reported failed."),
        ]
    ):
        fn = opt(fn)
    return fn


def executor_from(kw: dict[str, Any]):
    """Pop the :func:`executor_options` values into an :class:`~neurflow.ingest.executor.ExecutorOptions`."""
    from ..executor import ExecutorOptions

    return ExecutorOptions(kw.pop("executor"), kw.pop("ray_address"), kw.pop("gpus_per_class"), kw.pop("cpus_per_class"), kw.pop("max_retries"))


def request_from(kw: dict[str, Any]):
    """Pop the :func:`compute_options` values into a :class:`~neurflow.ingest.pipeline.ComputeRequest`."""
    from ..pipeline import ComputeRequest

    opts = model_options_from(kw)
    config = circuit_config_from(kw)
    layers = tuple(s.strip() for s in kw.pop("layers").split(",") if s.strip()) if kw.get("layers") else None
    kw.pop("layers", None)
    return ComputeRequest(
        model=opts.model or "resnet50",
        data=kw.pop("data"),
        out=kw.pop("out") or DEFAULT_OUT,
        classes=kw.pop("classes"),
        weights=opts.weights,
        layers=layers,
        include_misclassified=kw.pop("include_misclassified"),
        config=config,
        device=opts.device,
        loader_workers=kw.pop("loader_workers"),
        **opts.load_kwargs(),
    )


def run_compute(req, quiet: bool, executor=None, on_class=None) -> list:
    """Run the computation with the executor and print its summary (per-stage times, failures,
    where each class ran)."""
    from .. import executor as executors
    from ..progress import bar_factory

    t0 = time.perf_counter()
    outcomes = executors.compute(req, executor, progress=bar_factory(quiet), log=echo_err, on_class=on_class)
    done = [o for o in outcomes if o.status == "computed"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    stages: dict[str, float] = {}
    for o in done:
        for k, v in o.stages.items():
            stages[k] = stages.get(k, 0.0) + v
    click.echo(
        f"compute: {len(done)} class(es) computed, {len(skipped)} up to date, {len(failed)} failed "
        f"in {time.perf_counter() - t0:.1f} s; artifacts in {req.out}"
    )
    if stages:
        click.echo("  time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    for o in failed:
        echo_err(f"  failed: {o.class_index} {o.class_name}: {o.message}")
    if executor is not None and executor.executor != "local":
        for line in executors.summary_lines(outcomes):
            echo_err(line)
    return outcomes


@click.command()
@compute_options
@handle_errors
def compute(**kw) -> None:
    """Compute circuit artifacts for the given classes (no database needed)."""
    quiet = kw.pop("quiet")
    executor = executor_from(kw)
    outcomes = run_compute(request_from(kw), quiet, executor)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)
