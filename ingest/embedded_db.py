"""The embedded graph database: a local ArcadeDB server speaking Neo4j's Bolt protocol.

Neo4j itself is not always installable; the PyPI package ``arcadedb-embedded`` bundles
a Java runtime, the ArcadeDB server and its Bolt plugin, and runs Neo4j-5-style Cypher
for the official ``neo4j`` driver. This module runs it as a separate background
process (never inside the calling process, which may hold torch) that outlives the
command that started it:

* data in ``<data_dir()>/arcadedb/`` (folder mode 0700): the server's ``databases/``,
  ``config/`` and ``log/``, the generated root password (``password``, mode 0600), the
  state file ``server.json`` (pid, ports, database, user; no secret) and the process's
  console output ``server.log`` (the previous run's in ``server.log.1``);
* Bolt and HTTP bound to 127.0.0.1 only (checked after every start on Linux);
* user ``root``, database ``neurflow`` (created on first start);
* JVM heap 1g unless ``heap_size`` or an ``-Xmx`` in ``ARCADEDB_JVM_ARGS`` says otherwise.

The password is passed to the server through its file, never on a command line, and
never appears in messages, logs or reprs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._arcadedb_server import _alive
from .errors import AuthenticationFailed, DatabaseError, DatabaseUnavailable, InputError

__all__ = ["DbInfo", "data_dir", "server_dir", "start", "stop", "status", "password", "USER", "DATABASE"]

USER = "root"
DATABASE = "neurflow"
HOST = "127.0.0.1"
DEFAULT_BOLT_PORT = 7687
DEFAULT_HTTP_PORT = 2480

_PASSWORD_FILE = "password"
_STATE_FILE = "server.json"
_LOG_FILE = "server.log"
_LOCK_FILE = ".lock"
_USERS_FILE = Path("config") / "server-users.jsonl"
_SERVER_SCRIPT = Path(__file__).with_name("_arcadedb_server.py")

# Children started by this process: kept so they can be reaped (no zombies, no
# "subprocess is still running" warnings) when this same process stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class DbInfo:
    """Where the embedded database is and whether it runs.

    Attributes:
        running: Whether the server process is alive (``start`` also waited until it
            answered ``RETURN 1``).
        uri: Its Bolt URI (``bolt://127.0.0.1:<port>``), or None when not running.
        user: The user name to connect with.
        database: The database name to pass as ``database_``.
        password_file: The file holding the generated password (mode 0600).
        pid: The server's process id, or None when not running.
        data_dir: The server's folder (databases, config, logs, state).
        log_file: The server process's console log.
        bolt_port: Its Bolt port, or None when not running.
        http_port: Its HTTP port, or None when not running.
    """

    running: bool
    uri: str | None
    user: str
    database: str
    password_file: Path
    pid: int | None
    data_dir: Path
    log_file: Path
    bolt_port: int | None = None
    http_port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (paths as strings); never the password itself."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out


def data_dir() -> Path:
    """The per-user neurflow data folder.

    ``$NEURFLOW_HOME`` if set; else ``$XDG_DATA_HOME/neurflow`` if ``XDG_DATA_HOME``
    is set to an absolute path; else ``~/.local/share/neurflow``. Not created here.

    Returns:
        The folder's path.
    """
    home = os.environ.get("NEURFLOW_HOME")
    if home:
        return Path(home).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "neurflow"
    return Path.home() / ".local" / "share" / "neurflow"


def server_dir() -> Path:
    """The embedded server's folder, ``<data_dir()>/arcadedb``."""
    return data_dir() / "arcadedb"


def password() -> str:
    """The embedded server's root password, read from its file.

    Returns:
        The password.

    Raises:
        DatabaseError: No password has been generated yet (the server never started).
    """
    path = server_dir() / _PASSWORD_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DatabaseError(f"no embedded database password at {path}; run 'neurflow db start' first") from None
    except OSError as exc:
        raise DatabaseError(f"cannot read the embedded database password file {path}: {exc.strerror}") from None
    if not value:
        raise DatabaseError(f"the embedded database password file {path} is empty; delete it and restart")
    return value


def status() -> DbInfo:
    """Whether the embedded server runs, from its state file and process table.

    Cheap: it does not connect (``start`` does).

    Returns:
        The server's :class:`DbInfo`.
    """
    root = server_dir()
    state = _read_state(root)
    if state is not None and _is_server_process(state["pid"], root):
        return _info(root, state)
    return _info(root, None)


def start(
    port: int | None = None,
    http_port: int | None = None,
    timeout: float = 60,
    *,
    heap_size: str | None = None,
    exit_with: int | None = None,
) -> DbInfo:
    """Start the embedded server in the background, or reuse the one that runs.

    A running server (its state file's pid is alive and is our server) is reused
    once it answers ``RETURN 1``. Otherwise a new server process is started in its
    own session with its working directory in the data folder (the server writes
    ``./log``), its console output in ``server.log``; on first start a
    random password is generated. Returns once Bolt answers ``RETURN 1`` on the
    database (Bolt answers some seconds after the process starts, not when the port
    opens).

    Args:
        port: Bolt port. Default: 7687, or a free port if 7687 is taken.
        http_port: ArcadeDB's HTTP port. Default: 2480, or a free port if taken.
        timeout: Seconds to wait for the server to answer.
        heap_size: JVM max heap (e.g. ``"2g"``); default 1g, or the ``-Xmx`` in
            ``ARCADEDB_JVM_ARGS`` when that is set.
        exit_with: A process id; the server stops itself when that process ends
            (used by the test suite so no server outlives it).

        ``heap_size`` and ``exit_with`` apply only to a server this call starts.

    Returns:
        The running server's :class:`DbInfo`.

    Raises:
        InputError: An explicit port is in use, or differs from the running server's.
        DatabaseUnavailable: The server did not start or answer within ``timeout``.
        AuthenticationFailed: The server refused the password in the password file.
        DatabaseError: The server listens on a non-loopback address, or another failure.
    """
    for name, value in (("port", port), ("http_port", http_port)):
        if value is not None and not 0 < value < 65536:
            raise InputError(f"{name} must be between 1 and 65535, got {value}")
    if timeout <= 0:
        raise InputError(f"timeout must be positive, got {timeout}")
    if heap_size is not None and not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", heap_size):
        raise InputError(f"heap size must look like 512m or 2g, got '{heap_size}'")
    root = server_dir()
    _make_private_dir(root)
    with _locked(root):
        state = _read_state(root)
        if state is not None and _is_server_process(state["pid"], root):
            for name, wanted, running in (("port", port, state["bolt_port"]), ("http port", http_port, state["http_port"])):
                if wanted is not None and wanted != running:
                    raise InputError(
                        f"the embedded database already runs with {name} {running} (pid {state['pid']}); "
                        f"stop it first with 'neurflow db stop' to use {name} {wanted}"
                    )
            info = _info(root, state)
            _wait_ready(info, password(), time.monotonic() + timeout, proc=None)
            return info
        _remove(root / _STATE_FILE)

        secret = _ensure_password(root)
        bolt = _choose_port(port, DEFAULT_BOLT_PORT, "Bolt")
        http = _choose_port(http_port, DEFAULT_HTTP_PORT, "HTTP", avoid=bolt)
        proc = _spawn(root, bolt, http, heap_size, exit_with)
        state = {"pid": proc.pid, "bolt_port": bolt, "http_port": http, "database": DATABASE, "user": USER,
                 "started_at": time.time()}
        _write_state(root, state)
        info = _info(root, state)
        try:
            _wait_ready(info, secret, time.monotonic() + timeout, proc=proc)
            _check_loopback_only(proc.pid, (bolt, http))
        except BaseException:
            _terminate(proc.pid, 15.0)
            _remove(root / _STATE_FILE)
            raise
        return info


def stop(timeout: float = 30) -> bool:
    """Stop the embedded server if it runs (SIGTERM, then SIGKILL after ``timeout``).

    Args:
        timeout: Seconds to wait for a clean shutdown before killing the process.

    Returns:
        True if a running server was stopped, False if none was running.
    """
    root = server_dir()
    if not root.is_dir():
        return False
    with _locked(root):
        state = _read_state(root)
        if state is None:
            return False
        stopped = False
        if _is_server_process(state["pid"], root):
            _terminate(state["pid"], timeout)
            stopped = True
        _remove(root / _STATE_FILE)
        return stopped


# --------------------------------------------------------------------------- helpers


def _info(root: Path, state: dict[str, Any] | None) -> DbInfo:
    running = state is not None
    return DbInfo(
        running=running,
        uri=f"bolt://{HOST}:{state['bolt_port']}" if state else None,
        user=USER,
        database=DATABASE,
        password_file=root / _PASSWORD_FILE,
        pid=state["pid"] if state else None,
        data_dir=root,
        log_file=root / _LOG_FILE,
        bolt_port=state["bolt_port"] if state else None,
        http_port=state["http_port"] if state else None,
    )


def _make_private_dir(root: Path) -> None:
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
    except OSError as exc:
        raise DatabaseError(f"cannot create the embedded database folder {root}: {exc.strerror}") from None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on the server folder: one start/stop at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_state(root: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((root / _STATE_FILE).read_text(encoding="utf-8"))
        int(state["pid"]), int(state["bolt_port"]), int(state["http_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / (_STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / _STATE_FILE)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _ensure_password(root: Path) -> str:
    """The root password, generated on first start into a 0600 file."""
    path = root / _PASSWORD_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return password()
    # ArcadeDB keeps the root user in config/server-users.jsonl and ignores the
    # configured password once that exists: a new password needs a new root user.
    _remove(root / _USERS_FILE)
    secret = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    return secret


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _choose_port(requested: int | None, default: int, what: str, avoid: int | None = None) -> int:
    if requested is not None:
        if requested == avoid or not _port_free(requested):
            raise InputError(f"{what} port {requested} on {HOST} is in use; choose another port or leave it out")
        return requested
    if default != avoid and _port_free(default):
        return default
    while True:
        port = _free_port()
        if port != avoid:
            return port


def _spawn(root: Path, bolt: int, http: int, heap_size: str | None, exit_with: int | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(_SERVER_SCRIPT), "--root", str(root), "--bolt-port", str(bolt),
           "--http-port", str(http), "--database", DATABASE]
    if heap_size:
        cmd += ["--heap", heap_size]
    if exit_with is not None:
        cmd += ["--exit-with", str(exit_with)]
    env = {k: v for k, v in os.environ.items() if k != "NEURFLOW_ARCADEDB_PASSWORD"}
    env["PYTHONUNBUFFERED"] = "1"
    log_path = root / _LOG_FILE
    if log_path.exists():  # keep the previous run's log, one generation
        os.replace(log_path, log_path.with_name(_LOG_FILE + ".1"))
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the parent, no terminal signals
            close_fds=True,
        )
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot start the embedded database process: {exc.strerror}") from None
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    return proc


def _wait_ready(info: DbInfo, secret: str, deadline: float, proc: subprocess.Popen[bytes] | None) -> None:
    """Poll ``RETURN 1`` over Bolt until it answers, the process dies or time runs out."""
    import neo4j
    from neo4j.exceptions import AuthError, ClientError, DriverError, Neo4jError, ServiceUnavailable

    uri, pid = str(info.uri), int(info.pid or 0)
    last = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise DatabaseUnavailable(
                f"the embedded database exited with status {proc.returncode} while starting; "
                f"see {info.log_file}:\n{_log_tail(info.log_file)}"
            )
        if proc is None and not _pid_alive(pid):
            raise DatabaseUnavailable(f"the embedded database (pid {pid}) stopped; see {info.log_file}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DatabaseUnavailable(
                f"the embedded database (pid {info.pid}) did not answer on {info.uri} in time ({last}); "
                f"see {info.log_file}, or run 'neurflow db stop' and start again"
            )
        driver = neo4j.GraphDatabase.driver(uri, auth=(info.user, secret),
                                            connection_timeout=max(1.0, min(5.0, remaining)))
        try:
            # An auto-commit read: execute_query would retry unreachable servers for
            # 30 s on its own; here the loop does the retrying, within the deadline.
            with driver.session(database=info.database) as session:
                session.run("RETURN 1 AS ok").consume()
            return
        except AuthError:
            raise AuthenticationFailed(
                f"the embedded database refused the password in {info.password_file}; stop it "
                f"('neurflow db stop'), delete that file and {info.data_dir / _USERS_FILE}, and start again"
            ) from None
        except ClientError as exc:  # e.g. the database is being created right now
            last = exc.code or type(exc).__name__
        except (ServiceUnavailable, DriverError, Neo4jError, OSError) as exc:
            last = type(exc).__name__
        finally:
            driver.close()
        time.sleep(0.25)


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    if not _alive(pid):
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_server_process(pid: int, root: Path) -> bool:
    """Whether ``pid`` is alive and (where /proc tells) our server for ``root``."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the state file
    args = [a.decode(errors="replace") for a in cmdline]
    return any(a.endswith("_arcadedb_server.py") or a.endswith("._arcadedb_server") for a in args) and str(root) in args


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; reaps our own children."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _listening_addresses(port: int) -> list[str] | None:
    """The local addresses with a TCP socket listening on ``port``, from /proc/net/tcp{,6}.

    Returns:
        The addresses (possibly empty), or None where /proc/net is not available.
    """
    found: list[str] = []
    seen_any = False
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        seen_any = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A = LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port or len(addr_hex) != width:
                continue
            # /proc prints each 32-bit word in host (little-endian) byte order.
            raw = b"".join(bytes.fromhex(addr_hex[i:i + 8])[::-1] for i in range(0, width, 8))
            found.append(str(ipaddress.ip_address(raw)))
    return found if seen_any else None


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _check_loopback_only(pid: int, ports: tuple[int, ...]) -> None:
    for port in ports:
        addresses = _listening_addresses(port)
        if addresses is None:
            return  # not Linux: the server is configured for 127.0.0.1, nothing to read back
        exposed = [a for a in addresses if not _is_loopback(a)]
        if exposed:
            raise DatabaseError(
                f"the embedded database (pid {pid}) listens on {', '.join(exposed)} port {port}, "
                "not on 127.0.0.1 only; it was stopped"
            )
