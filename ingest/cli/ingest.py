"""``neurflow compute | load | ingest``: artifacts first, then the graph."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .cli_common import connect_from_options, db_options, echo_err, handle_errors, parse_floats

__all__ = ["compute", "load", "ingest", "link"]


def _compute_options(fn):
    opts = [
        click.option("--model", default="resnet50", show_default=True, help="torchvision model name, 'demo', or path/to/file.py:factory."),
        click.option("--weights", default=None, help="torchvision weights name (IMAGENET1K_V2, DEFAULT) or a state_dict file. Downloads only when named."),
        click.option("--data", type=click.Path(path_type=Path), required=True, help="ImageFolder root: one folder of images per class."),
        click.option("--classes", default="all", show_default=True, help="'all', or comma-separated class indices or names."),
        click.option("--layers", default=None, help="Comma-separated layer names, logit layer first (default: the model's preset)."),
        click.option("--include-misclassified", is_flag=True, help="Use all of a class's images, not only those the model predicts as the class."),
        click.option("--tau", type=int, default=16, show_default=True, help="Core concept neurons per target (Definition 3)."),
        click.option("--k", "k", type=int, default=50, show_default=True, help="Top patches per neuron concept (Definition 1)."),
        click.option("--steps", type=int, default=50, show_default=True, help="Integrated-gradients steps N (Eq. 2)."),
        click.option(
            "--method",
            type=click.Choice(["riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"]),
            default="riemann_right",
            show_default=True,
            help="IG quadrature; riemann_right is Eq. 2 verbatim.",
        ),
        click.option("--aggregate", type=click.Choice(["eq2", "abs-mean"]), default="eq2", show_default=True, help="Ranking of core neurons: Eq. 2, or the authors' mean |score|."),
        click.option("--max-semantic-groups", type=int, default=5, show_default=True),
        click.option("--max-neuron-groups", type=int, default=10, show_default=True),
        click.option("--batch-size", type=int, default=64, show_default=True, help="Patches per forward pass."),
        click.option("--ig-batch", type=int, default=512, show_default=True, help="Interpolated inputs per IG forward pass."),
        click.option(
            "--precision",
            type=click.Choice(["float32", "bfloat16"]),
            default="float32",
            show_default=True,
            help="Arithmetic of the activation pass that ranks patches (bfloat16: ~2x faster on bf16 hardware; IG stays float32).",
        ),
        click.option("--map-cache-mb", type=int, default=1024, show_default=True, help="Memory for lower-layer feature maps kept for IG (0 = recompute)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--input-size", type=int, default=None, help="Model input side (default: the weights' or 224)."),
        click.option("--mean", default=None, help="Normalisation mean, e.g. 0.485,0.456,0.406."),
        click.option("--std", default=None, help="Normalisation std, e.g. 0.229,0.224,0.225."),
        click.option("--no-normalize", is_flag=True, help="Feed [0,1] pixels (models that normalise inside forward)."),
        click.option("--demo-root", type=click.Path(path_type=Path), default=Path(".neurflow/demo"), show_default=True, help="Where the demo model lives (--model demo)."),
        click.option("--out", type=click.Path(path_type=Path), default=Path("artifacts"), show_default=True, envvar="NEURFLOW_ARTIFACTS", help="Artifact directory."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _request(kw: dict):
    from neurflow.circuit import CircuitConfig

    from .errors import InputError
    from .pipeline import ComputeRequest

    try:
        config = CircuitConfig(
            tau=kw["tau"],
            k=kw["k"],
            steps=kw["steps"],
            method=kw["method"],
            aggregate=kw["aggregate"],
            max_semantic_groups=kw["max_semantic_groups"],
            max_neuron_groups=kw["max_neuron_groups"],
            batch_size=kw["batch_size"],
            ig_batch=kw["ig_batch"],
            precision=kw["precision"],
            map_cache_mb=kw["map_cache_mb"],
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    layers = tuple(s.strip() for s in kw["layers"].split(",") if s.strip()) if kw.get("layers") else None
    return ComputeRequest(
        model=kw["model"],
        data=kw["data"],
        out=kw["out"],
        classes=kw["classes"],
        weights=kw["weights"],
        layers=layers,
        include_misclassified=kw["include_misclassified"],
        config=config,
        device=kw["device"],
        input_size=kw["input_size"],
        mean=parse_floats(kw["mean"], "--mean"),
        std=parse_floats(kw["std"], "--std"),
        normalize=not kw["no_normalize"],
        demo_root=kw["demo_root"] if kw["model"] == "demo" else None,
    )


def run_compute(req, quiet: bool) -> list:
    from .pipeline import compute as do_compute
    from .progress import bar_factory

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


def run_load(conn, directories, quiet: bool, batch_size: int = 2000) -> list:
    from .pipeline import load as do_load
    from .progress import bar_factory

    outcomes = do_load(conn.driver, conn.database, directories, progress=bar_factory(quiet), log=echo_err, batch_size=batch_size)
    loaded = [o for o in outcomes if o.status == "loaded"]
    rels = sum(o.relationships for o in loaded)
    nodes = sum(n for o in loaded for k, n in o.rows.items() if k in ("semantic_group", "neuron_group", "patch", "neuron", "class", "layer", "model", "run"))
    secs = sum(o.seconds for o in loaded) or 1e-9
    click.echo(
        f"load: {len(loaded)} class(es) loaded, {len(outcomes) - len(loaded)} failed; {nodes} node rows, "
        f"{rels} relationship rows in {secs:.1f} s ({rels / secs:.0f} relationships/s)"
    )
    return outcomes


@click.command()
@_compute_options
@handle_errors
def compute(**kw) -> None:
    """Compute circuit artifacts for the given classes (no database needed)."""
    outcomes = run_compute(_request(kw), kw["quiet"])
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_options
@click.option("--no-link", is_flag=True, help="Do not rebuild the cross-class concept atlas afterwards.")
@click.option("--batch-size", type=int, default=2000, show_default=True, help="Rows per UNWIND transaction.")
@click.option("--quiet", is_flag=True)
@handle_errors
def load(artifacts, uri, user, password, database, no_link, batch_size, quiet) -> None:
    """Load existing circuit artifacts into the graph (replacing those classes' subgraphs)."""
    from neurflow.artifact import is_complete

    from .errors import ArtifactError
    from .pipeline import find_artifacts

    directories = find_artifacts(artifacts)
    broken = [d for d in directories if not is_complete(d)]
    for d in broken:
        echo_err(f"  {d}: incomplete or corrupt artifact, skipped (re-run 'neurflow compute' for it)")
    directories = [d for d in directories if d not in broken]
    if not directories:
        raise ArtifactError("no complete circuit artifact to load")
    with connect_from_options(uri, user, password, database) as conn:
        outcomes = run_load(conn, directories, quiet, batch_size)
        if not no_link:
            _maybe_link(conn, directories, quiet)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)


@click.command()
@_compute_options
@db_options
@click.option("--no-link", is_flag=True, help="Do not rebuild the cross-class concept atlas afterwards.")
@handle_errors
def ingest(uri, user, password, database, no_link, **kw) -> None:
    """Compute circuits, then load them into the graph (compute + load + link).

    Artifacts are written to disk before anything is loaded: if the database is down, the
    computed classes stay on disk and 'neurflow load' finishes the job later.
    """
    req = _request(kw)
    outcomes = run_compute(req, kw["quiet"])
    directories = [o.directory for o in outcomes if o.status in ("computed", "skipped")]
    if directories:
        with connect_from_options(uri, user, password, database) as conn:
            loaded = run_load(conn, directories, kw["quiet"])
            if not no_link:
                _maybe_link(conn, [Path(req.out)], kw["quiet"])
        if any(o.status == "failed" for o in loaded):
            raise SystemExit(1)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)


def _maybe_link(conn, paths, quiet: bool) -> None:
    from .atlas_writer import link_artifacts

    link_artifacts(conn, paths, quiet=quiet)


@click.command()
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=Path))
@db_options
@click.option("--quiet", is_flag=True)
@handle_errors
def link(artifacts, uri, user, password, database, quiet) -> None:
    """Build the cross-class concept atlas from the artifacts and write it to the graph."""
    from .atlas_writer import link_artifacts

    with connect_from_options(uri, user, password, database) as conn:
        link_artifacts(conn, list(artifacts) or [Path("artifacts")], quiet=quiet)
