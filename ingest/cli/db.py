"""``neurflow db``: start, stop or inspect the embedded Bolt database."""

from __future__ import annotations

import json

import click

from ..embedded_db import DbInfo
from .options import handle_errors

__all__ = ["db"]

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


@click.group(name="db")
def db() -> None:
    """Start, stop or inspect the embedded Bolt database.

    The embedded database is an ArcadeDB server (PyPI arcadedb-embedded) speaking
    Neo4j's Bolt protocol on 127.0.0.1 only. It runs in the background until
    'neurflow db stop'; its data, generated password and logs live in
    $NEURFLOW_HOME/arcadedb (default ~/.local/share/neurflow/arcadedb).
    """


@db.command(short_help="Start it in the background, or reuse the running one.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Bolt port [default: 7687, or a free one if taken].")
@click.option("--http-port", type=click.IntRange(1, 65535), default=None, help="ArcadeDB HTTP port [default: 2480, or a free one].")
@click.option("--heap", default=None, help="JVM max heap, e.g. 2g [default: 1g, or -Xmx from ARCADEDB_JVM_ARGS].")
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True, help="Seconds to wait until it answers.")
@_FORMAT
@handle_errors
def start(port: int | None, http_port: int | None, heap: str | None, timeout: float, fmt: str) -> None:
    """Start the embedded database in the background (or reuse the running one)."""
    from .. import embedded_db

    _show(embedded_db.start(port=port, http_port=http_port, timeout=timeout, heap_size=heap), fmt)


@db.command()
@click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True, help="Seconds before it is killed.")
@handle_errors
def stop(timeout: float) -> None:
    """Stop the embedded database."""
    from .. import embedded_db

    was = embedded_db.status()
    if embedded_db.stop(timeout=timeout):
        click.echo(f"stopped the embedded database (pid {was.pid})")
    else:
        click.echo("the embedded database is not running")


@db.command()
@_FORMAT
@handle_errors
def status(fmt: str) -> None:
    """Show whether the embedded database runs, and how to connect to it."""
    from .. import embedded_db

    _show(embedded_db.status(), fmt)


def _show(info: DbInfo, fmt: str) -> None:
    data = info.to_dict()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    data["running"] = "yes" if info.running else "no"
    width = max(len(key) for key in data)
    for key, value in data.items():
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")
