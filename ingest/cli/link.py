"""``neurflow link``: the cross-class concept atlas, from the artifacts, into the graph."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .options import connect_from_options, db_options, handle_errors, quiet_option

__all__ = ["link", "link_paths"]


def link_paths(conn, paths, quiet: bool) -> None:
    """Build the atlas of the artifacts under ``paths`` and write it."""
    from ..graph.atlas import link_artifacts

    link_artifacts(conn, list(paths), quiet=quiet)


@click.command()
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=Path))
@db_options
@quiet_option
@handle_errors
def link(artifacts, uri, user, password, database, quiet) -> None:
    """Build the cross-class concept atlas from the artifacts and write it to the graph.

    ARTIFACTS default to NEURFLOW_ARTIFACTS, else ``artifacts``.
    """
    paths = list(artifacts) or [Path(os.environ.get("NEURFLOW_ARTIFACTS") or "artifacts")]
    with connect_from_options(uri, user, password, database) as conn:
        link_paths(conn, paths, quiet)
