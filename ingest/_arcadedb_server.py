"""The embedded graph database's server process (internal; started by ``embedded_db``).

Runs an ArcadeDB server with its Neo4j Bolt plugin, bound to 127.0.0.1 only, creates
the database if it is missing, and blocks until SIGTERM (or SIGINT), then shuts the
server down cleanly and exits.

It is started as a script by file path (``python .../_arcadedb_server.py``) so that
it does not import the ``neurflow`` package (and whatever that imports) into the
server's process; ``python -m neurflow.ingest._arcadedb_server`` works as well. It
uses only the standard library and ``arcadedb_embedded``.

The root password is never taken from the command line (it would show in ``ps``):
it is read from the environment variable ``NEURFLOW_ARCADEDB_PASSWORD`` (removed
from the environment at once) or else from ``<root>/password``.

JVM heap: ``--heap`` if given; else an ``-Xmx`` in ``ARCADEDB_JVM_ARGS`` if there is
one; else 1g.

With ``--exit-with PID`` it also shuts down when that process ends (the test suite
uses this so that no server outlives it).

Exit status: 0 after a clean shutdown, 2 on bad arguments or no password, 3 when the
server could not start.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

# Run as a script, this file's folder (the neurflow.ingest sources) would come first
# on sys.path and could shadow other modules; drop it.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

PASSWORD_ENV = "NEURFLOW_ARCADEDB_PASSWORD"
BOLT_PLUGIN = "Bolt:com.arcadedb.bolt.BoltProtocolPlugin"
LOOPBACK = "127.0.0.1"
DEFAULT_HEAP = "1g"


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [neurflow-db] {message}", flush=True)


def _read_password(root: str) -> str | None:
    from_env = os.environ.pop(PASSWORD_ENV, None)
    if from_env:
        return from_env
    try:
        with open(os.path.join(root, "password"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _heap_size(cli_heap: str | None) -> str | None:
    """The ``heap_size`` for ``start_jvm``: None keeps an -Xmx from ARCADEDB_JVM_ARGS."""
    if cli_heap:
        return cli_heap
    if any(arg.startswith("-Xmx") for arg in os.environ.get("ARCADEDB_JVM_ARGS", "").split()):
        return None
    return DEFAULT_HEAP


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="server root (databases, config, log)")
    parser.add_argument("--bolt-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--database", default="neurflow")
    parser.add_argument("--heap", default=None, help="JVM max heap, e.g. 1g (default 1g)")
    parser.add_argument("--exit-with", type=int, default=None, metavar="PID",
                        help="stop the server when this process ends (test suites)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the server, create the database if missing, block until SIGTERM.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    args = _parse_args(argv)
    root = os.path.abspath(args.root)
    password = _read_password(root)
    if not password:
        _log(f"no root password: set {PASSWORD_ENV} or write {os.path.join(root, 'password')}")
        return 2

    stop_requested = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        _log(f"received {signal.Signals(signum).name}, shutting down")
        stop_requested.set()

    # Python's handlers first: a SIGTERM during the JVM start still ends us cleanly.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    import arcadedb_embedded as adb

    heap = _heap_size(args.heap)
    _log(
        f"starting ArcadeDB {adb.__version__} root={root} bolt={LOOPBACK}:{args.bolt_port} "
        f"http={LOOPBACK}:{args.http_port} heap={heap or 'from ARCADEDB_JVM_ARGS'}"
    )
    server = None
    try:
        server = adb.ArcadeDBServer(
            root,
            password,
            config={
                "host": LOOPBACK,  # every listener (HTTP, Bolt) binds loopback only
                "bolt_host": LOOPBACK,
                "server_plugins": BOLT_PLUGIN,
                "bolt_port": args.bolt_port,
                "http_port": args.http_port,
            },
            jvm_kwargs={"heap_size": heap},
        )
        del password
        # The JVM (started above) installs its own SIGTERM/SIGINT handlers, which call
        # back into Python and can crash a finalizing interpreter; take them back.
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        if not stop_requested.is_set():
            server.start()
            server.create_database(args.database)  # opens it when it exists
            _log(f"ready: database '{args.database}' on bolt://{LOOPBACK}:{args.bolt_port}")
        while not stop_requested.wait(0.5):
            if args.exit_with is not None and not _alive(args.exit_with):
                _log(f"process {args.exit_with} ended, shutting down")
                break
    except Exception as exc:  # the engine's message names no credentials
        _log(f"server failed: {type(exc).__name__}: {exc}")
        _shutdown(server)
        return 3
    _shutdown(server)
    _log("stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shutdown(server: object | None) -> None:
    if server is None:
        return
    try:
        server.stop()  # type: ignore[attr-defined]
    except Exception as exc:
        _log(f"error while stopping: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the JVM's leftover non-daemon threads make a normal interpreter
    # exit hang after the server has stopped (everything is flushed and closed here).
    os._exit(status)
