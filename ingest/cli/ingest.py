"""``neurflow ingest``: compute + load + link, artifacts on disk before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import click

from .compute import compute_options, request_from, run_compute
from .load import run_load
from .options import connect_from_options, db_options, handle_errors

__all__ = ["ingest"]


@click.command()
@compute_options
@db_options
@click.option("--no-link", is_flag=True, help="Do not rebuild the cross-class concept atlas afterwards.")
@handle_errors
def ingest(uri, user, password, database, no_link, **kw) -> None:
    """Compute circuits, then load them into the graph (compute + load + link).

    Artifacts are written to disk before anything is loaded: if the database is down, the
    computed classes stay on disk and 'neurflow load' finishes the job later.
    """
    from .link import link_paths

    quiet = kw.pop("quiet")
    req = request_from(kw)
    outcomes = run_compute(req, quiet)
    directories = [o.directory for o in outcomes if o.status in ("computed", "skipped")]
    if directories:
        with connect_from_options(uri, user, password, database) as conn:
            loaded = run_load(conn, directories, quiet)
            if not no_link:
                link_paths(conn, [Path(req.out)], quiet)
        if any(o.status == "failed" for o in loaded):
            raise SystemExit(1)
    if any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)
