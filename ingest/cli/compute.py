"""``neurflow compute``: circuit artifacts for the given classes (no database)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .options import artifacts_option, circuit_config_from, circuit_options, echo_err, handle_errors, model_options, model_options_from, quiet_option

__all__ = ["compute", "compute_options", "request_from", "run_compute"]

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
            artifacts_option,
            quiet_option,
        ]
    ):
        fn = opt(fn)
    return fn


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
        **opts.load_kwargs(),
    )


def run_compute(req, quiet: bool) -> list:
    """Run the computation and print its summary (per-stage times, failures)."""
    from ..pipeline import compute as do_compute
    from ..progress import bar_factory

    t0 = time.perf_counter()
    outcomes = do_compute(req, progress=bar_factory(quiet), log=echo_err)
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
    return outcomes


@click.command()
@compute_options
@handle_errors
def compute(**kw) -> None:
    """Compute circuit artifacts for the given classes (no database needed)."""
    quiet = kw.pop("quiet")
    outcomes = run_compute(request_from(kw), quiet)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)
