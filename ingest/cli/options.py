"""Options and error handling shared by the subcommands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from .errors import NeurflowError

__all__ = ["db_options", "handle_errors", "parse_floats", "connect_from_options", "echo_err"]


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn NeurflowError into ``Error: <message>`` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NeurflowError as exc:
            echo_err(f"Error: {exc}")
            raise SystemExit(exc.exit_code) from None

    return wrapper


def db_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--uri/--user/--password/--database``, also from NEURFLOW_* environment variables.

    With no URI, the embedded database is started (or reused) and its credentials are used.
    """
    fn = click.option("--database", envvar="NEURFLOW_DATABASE", default=None, help="Database name [env NEURFLOW_DATABASE].")(fn)
    fn = click.option("--password", envvar="NEURFLOW_PASSWORD", default=None, help="Password [env NEURFLOW_PASSWORD]; never logged.")(fn)
    fn = click.option("--user", envvar="NEURFLOW_USER", default=None, help="User name [env NEURFLOW_USER].")(fn)
    fn = click.option(
        "--uri",
        envvar="NEURFLOW_URI",
        default=None,
        help="Bolt URI of a Neo4j 5 server [env NEURFLOW_URI]; default: the embedded database.",
    )(fn)
    return fn


def connect_from_options(uri: str | None, user: str | None, password: str | None, database: str | None):
    """Open a connection (see :func:`neurflow.ingest.connection.connect`)."""
    from .connection import connect

    return connect(uri, user, password, database)


def parse_floats(value: str | None, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got '{value}'", param_hint=name) from None
