"""``neurflow demo``: the offline main job.

Generates (or reuses) the procedural demo world and its small CNN, computes the circuits of
every demo class, loads them into the graph (the embedded database unless ``--uri`` is
given), builds the concept atlas, labels every neuron group from the world's per-pixel
concept maps (the ``annotations`` labeller), runs the bias debugger when it is available, and prints a
summary with example query results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["demo", "demo_request", "DEMO_CONFIG"]

# Settings for the demo: the demo CNN has 64 channels in its upper blocks, so tau is 8.
DEMO_CONFIG: dict[str, Any] = {"tau": 8, "k": 50, "steps": 16, "method": "gausslegendre"}


def demo_request(root: Path):
    """The compute request of the demo: every class of the world's validation split, on the
    demo model under ``root``, artifacts in ``root/artifacts``."""
    from neurflow.circuit import CircuitConfig

    from ..pipeline import ComputeRequest

    return ComputeRequest(
        model="demo",
        data=root / "world" / "val",
        out=root / "artifacts",
        classes="all",
        config=CircuitConfig(**DEMO_CONFIG),
        device="auto",
        demo_root=root,
    )


def _run_query(conn, name: str, **params):
    from neurflow.queries.registry import run_query

    return run_query(conn.driver, name, params, database=conn.database)


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path(".neurflow/demo"), show_default=True, help="Where the demo world, model and artifacts live.")
@db_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--skip-debug", is_flag=True, help="Do not run the bias debugger.")
@handle_errors
def demo(root: Path, uri, user, password, database, quiet: bool, skip_debug: bool) -> None:
    """Build the demo world and model, ingest every class, and show example queries."""
    from ..demo.model import ensure_demo
    from .compute import run_compute
    from .load import run_load

    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    world, trained = ensure_demo(root, quiet=quiet)
    click.echo(
        f"demo: world {world.root}; model "
        f"{'reused' if trained.reused else 'trained'} (val accuracy {trained.val_accuracy:.3f})"
    )
    req = demo_request(root)
    outcomes = run_compute(req, quiet)
    directories = [o.directory for o in outcomes if o.status in ("computed", "skipped")]
    if not directories:
        raise SystemExit(1)
    with connect_from_options(uri, user, password, database) as conn:
        run_load(conn, directories, quiet)
        from ..graph.atlas import link_artifacts

        link_artifacts(conn, [req.out], quiet=quiet)
        # concept labels (neurflow label --labeller annotations): the world's per-pixel concept
        # maps name every neuron group; stored beside the artifacts, so the debugger reads them
        from ..labelling import demo_annotations, label_classes, write_labels
        from ..labelling.concepts import label_concepts, write_concept_labels_to_graph

        annotations = demo_annotations(world.root)
        label_classes(directories, annotations, log=None if quiet else echo_err)
        write_labels(conn, directories)
        write_concept_labels_to_graph(conn, label_concepts([req.out], annotations, log=None if quiet else echo_err))
        if not skip_debug:
            from ..debugging import debug_classes
            from ..session import open_request_artifacts

            # the same annotations decide whether a group that causes false positives is part of its class
            debugged = debug_classes(conn, open_request_artifacts(req), classes="all", annotations=annotations.annotations.root, quiet=quiet)
            if debugged:
                click.echo("")
                click.echo("debug verdicts (false positives tested with FDR control; 'insufficient evidence' below the floor):")
                for circuit, result in debugged:
                    click.echo(f"  {circuit.class_name}: {result.verdict} ({result.n_fp} false positives)")
        click.echo("")
        click.echo("query overview (nodes and relationships in the graph):")
        rows = [rec for rec in _run_query(conn, "overview") if rec["section"] in ("node", "relationship")]
        click.echo("  " + ", ".join(f"{rec['name']}={rec['count']}" for rec in rows))
        click.echo("")
        click.echo("query trace_class --param class=bee --param limit=5 (strongest paths into the 'bee' logit):")
        for rec in _run_query(conn, "trace_class", **{"class": "bee", "limit": 5}):
            named = [label or uid.rsplit("/", 2)[-2] + " " + uid.rsplit("/", 1)[-1] for label, uid in zip(rec["labels"], rec["groups"])]
            click.echo(f"  #{rec['rank']} weight {rec['weight']:.4f}: " + " → ".join(named))
        click.echo("  (labels by the annotations labeller; uids and relations: neurflow query trace_class -p class=bee --format json)")
        for name, title in (("biased_groups", "spurious groups, most specific first"), ("fp_causes", "every group that causes false positives")):
            rows = _run_query(conn, name, limit=3)
            if rows:
                click.echo("")
                click.echo(f"query {name} --param limit=3 ({title}):")
                for rec in rows:
                    click.echo("  " + ", ".join(f"{k}={_short(v)}" for k, v in rec.items()
                                                if k in ("rank", "class_name", "group", "label", "verdict", "bias_score", "q_value", "confusers")))
    click.echo(f"demo: done in {time.perf_counter() - t0:.1f} s. Try: neurflow query --list")
    if any(o.status == "failed" for o in outcomes):
        echo_err("demo: some classes failed (see above)")
        raise SystemExit(1)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 8:
        return str(value[:8])[:-1] + ", ...]"
    return str(value)
