"""``neurflow load``: existing circuit artifacts into the graph (no model, no images)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import connect_from_options, db_options, echo_err, handle_errors, quiet_option

__all__ = ["load", "run_load", "print_load_summary", "complete_artifacts"]


def complete_artifacts(paths) -> list[Path]:
    """The complete artifacts under ``paths``; broken ones are reported and left out.

    Raises:
        ArtifactError: none is complete.
    """
    from neurflow.artifact import is_complete
    from neurflow.errors import ArtifactError

    from ..pipeline import find_artifacts

    directories = find_artifacts(paths)
    broken = [d for d in directories if not is_complete(d)]
    for d in broken:
        echo_err(f"  {d}: incomplete or corrupt artifact, skipped (re-run 'neurflow compute' for it)")
    directories = [d for d in directories if d not in broken]
    if not directories:
        raise ArtifactError("no complete circuit artifact to load")
    return directories


def run_load(conn, directories, quiet: bool, batch_size: int = 10_000) -> list:
    """Load the artifacts and print the summary (rows, relationships/s)."""
    from ..pipeline import load as do_load
    from ..progress import bar_factory

    outcomes = do_load(conn.driver, conn.database, directories, progress=bar_factory(quiet), log=echo_err, batch_size=batch_size)
    print_load_summary(outcomes)
    return outcomes


def print_load_summary(outcomes: list) -> None:
    """``load: N class(es) loaded, ...`` with relationships/s."""
    loaded = [o for o in outcomes if o.status == "loaded"]
    rels = sum(o.relationships for o in loaded)
    nodes = sum(n for o in loaded for k, n in o.rows.items() if k in ("semantic_group", "neuron_group", "patch", "neuron", "class", "layer", "model", "run"))
    secs = sum(o.seconds for o in loaded) or 1e-9
    click.echo(
        f"load: {len(loaded)} class(es) loaded, {len(outcomes) - len(loaded)} failed; {nodes} node rows, "
        f"{rels} relationship rows in {secs:.1f} s ({rels / secs:.0f} relationships/s)"
    )


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_options
@click.option("--no-link", is_flag=True, help="Do not rebuild the cross-class concept atlas afterwards.")
@click.option("--batch-size", type=int, default=10_000, show_default=True, help="Rows per UNWIND statement (Neo4j recommends 10k-50k; a class is one transaction).")
@quiet_option
@handle_errors
def load(artifacts, uri, user, password, database, no_link, batch_size, quiet) -> None:
    """Load existing circuit artifacts into the graph (replacing those classes' subgraphs)."""
    from .link import link_paths

    directories = complete_artifacts(artifacts)
    with connect_from_options(uri, user, password, database) as conn:
        outcomes = run_load(conn, directories, quiet, batch_size)
        if not no_link:
            link_paths(conn, directories, quiet)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)
