"""``neurflow ingest``: compute + load + link, each artifact on disk before it is loaded."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .compute import compute_options, executor_from, request_from, run_compute
from .load import print_load_summary
from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["ingest"]


@click.command()
@compute_options
@db_options
@click.option("--no-link", is_flag=True, help="Do not rebuild the cross-class concept atlas afterwards.")
@handle_errors
def ingest(uri, user, password, database, no_link, **kw) -> None:
    """Compute circuits, then load them into the graph (compute + load + link).

    Each class is loaded as soon as its artifact is on disk (with --executor ray, in the
    order the cluster finishes them; the driver is the only writer). If the database is
    down, the computation goes on, the computed classes stay on disk, and 'neurflow load'
    finishes the job later (exit code 4).
    """
    from neurflow.errors import DatabaseError

    from ..pipeline import load as do_load
    from ..progress import bar_factory
    from .link import link_paths

    quiet = kw.pop("quiet")
    executor = executor_from(kw)
    req = request_from(kw)
    loaded: list = []
    failure: list[DatabaseError] = []
    with contextlib.ExitStack() as stack:
        conn = None

        def load_one(outcome) -> None:
            nonlocal conn
            if failure or outcome.status not in ("computed", "skipped"):
                return
            try:
                if conn is None:
                    conn = stack.enter_context(connect_from_options(uri, user, password, database))
                loaded.extend(do_load(conn.driver, conn.database, [outcome.directory], progress=bar_factory(quiet), log=echo_err))
            except DatabaseError as exc:  # keep computing; the artifacts stay on disk
                failure.append(exc)
                echo_err(f"  graph: {exc}; computing goes on, load the artifacts later with 'neurflow load'")

        outcomes = run_compute(req, quiet, executor, on_class=load_one)
        if failure:
            raise failure[0]
        if loaded:
            print_load_summary(loaded)
            if not no_link and conn is not None:
                link_paths(conn, [Path(req.out)], quiet)
    if any(o.status == "failed" for o in loaded) or any(o.status == "failed" for o in outcomes):
        raise SystemExit(1)
