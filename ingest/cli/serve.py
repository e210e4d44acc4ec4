"""``neurflow serve``: the local web explorer over the graph (see :mod:`neurflow.ingest.web`).

::

    neurflow serve                                   # the embedded database, http://127.0.0.1:8765
    neurflow serve --data .neurflow/demo/world/val   # also show patches on their source images
    neurflow serve --uri bolt://db:7687 --user neo4j --host 0.0.0.0 --allow-remote

Binds 127.0.0.1 by default; any other address needs ``--allow-remote`` (the explorer
has no login: anyone who reaches the port reads the graph).
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import connect_from_options, db_options, echo_err, handle_errors

__all__ = ["serve", "db_label"]


def db_label(conn) -> str:
    """What a page says it reads: the URI, the database and the user, never the password."""
    who = f", user {conn.user}" if conn.user else ""
    return f"{conn.uri} (database {conn.database or 'default'}{who})"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, envvar="NEURFLOW_SERVE_HOST", help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), envvar="NEURFLOW_SERVE_PORT", help="Port to bind.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host that is not a loopback address (the explorer has no login).")
@click.option("--data", "data_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Image folder the circuits were computed from (repeatable): patches are then drawn on their source images.")
@db_options
@handle_errors
def serve(host: str, port: int, allow_remote: bool, data_roots: tuple[Path, ...], uri, user, password, database) -> None:
    """Browse the circuits in a web browser: classes, circuits with their patches, groups, bias."""
    from ..web.app import is_loopback

    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(f"refusing to bind '{host}', which is not a loopback address: the explorer has no login, so anyone who "
                               "reaches the port reads the graph. Add --allow-remote if that is what you want.")
    for root in data_roots:
        if not root.is_dir():
            raise click.BadParameter(f"'{root}' is not a folder", param_hint="--data")
    import uvicorn

    from ..web.app import create_app
    from ..web.views import runner

    with connect_from_options(uri, user, password, database) as conn:
        label = db_label(conn)
        app = create_app(runner(conn.driver, conn.database), db_label=label, data_roots=data_roots)
        shown = f"[{host}]" if ":" in host else host
        echo_err(f"NeurFlow explorer on http://{shown}:{port}/ reading {label} (Ctrl+C to stop)")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
