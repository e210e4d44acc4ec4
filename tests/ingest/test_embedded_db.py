"""The embedded Bolt database (ArcadeDB), its CLI, and ``connect``'s error mapping.

Most tests share the session server (``bolt``/``graph``); one lifecycle test starts
and stops its own server in a separate NEURFLOW_HOME, from a child process that
exits first (the server must outlive it).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from neurflow.ingest import embedded_db
from neurflow.ingest.cli import main
from neurflow.ingest.connection import Connection, connect
from neurflow.ingest.errors import AuthenticationFailed, DatabaseError, DatabaseUnavailable, InputError

STATUS_KEYS = {"running", "uri", "user", "database", "password_file", "pid", "data_dir", "log_file"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _non_loopback_ipv4() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    candidates: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
            candidates.append(sock.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return next((a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"), None)


def _count(conn: Connection, label: str) -> int:
    records, _, _ = conn.driver.execute_query(f"MATCH (n:{label}) RETURN count(n) AS c", database_=conn.database)
    return int(records[0]["c"])


# --------------------------------------------------------------------------- the session server


def test_status_reports_the_running_server(bolt: Connection) -> None:
    info = embedded_db.status()
    assert info.running and info.pid is not None
    assert info.uri == bolt.uri and info.uri.startswith("bolt://127.0.0.1:")
    assert (info.user, info.database) == ("root", "neurflow") == (bolt.user, bolt.database)
    assert info.data_dir == embedded_db.data_dir() / "arcadedb"
    assert STATUS_KEYS <= set(info.to_dict())
    json.dumps(info.to_dict())  # JSON-ready


def test_start_reuses_the_running_server(bolt: Connection) -> None:
    before = embedded_db.status()
    t0 = time.monotonic()
    again = embedded_db.start()
    assert again.pid == before.pid and again.uri == before.uri
    assert time.monotonic() - t0 < 10  # no new JVM


def test_start_refuses_a_different_port_while_running(bolt: Connection) -> None:
    with pytest.raises(InputError, match="already runs with port"):
        embedded_db.start(port=_free_port())


def test_password_file_is_private_and_secret_stays_out_of_logs_and_reprs(bolt: Connection) -> None:
    info = embedded_db.status()
    assert stat.S_IMODE(info.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.data_dir.stat().st_mode) == 0o700
    secret = embedded_db.password()
    assert len(secret) >= 24
    assert secret not in repr(info) and secret not in json.dumps(info.to_dict()) and secret not in repr(bolt)
    for path in [info.log_file, info.data_dir / "server.json", *(info.data_dir / "log").glob("*")]:
        assert secret not in path.read_text(errors="replace"), path
    cmdline = Path(f"/proc/{info.pid}/cmdline")
    if cmdline.exists():
        assert secret.encode() not in cmdline.read_bytes()


def test_server_listens_on_loopback_only(bolt: Connection) -> None:
    info = embedded_db.status()
    assert info.bolt_port and info.http_port
    checked = False
    address = _non_loopback_ipv4()
    if address is not None:
        for port in (info.bolt_port, info.http_port):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                with pytest.raises(OSError):  # refused (or filtered): not listening there
                    sock.connect((address, port))
        checked = True
    for port in (info.bolt_port, info.http_port):
        addresses = embedded_db._listening_addresses(port)
        if addresses is None:
            continue  # no /proc/net
        assert addresses, f"nothing listens on port {port}"
        assert all(embedded_db._is_loopback(a) for a in addresses), addresses
        checked = True
    if not checked:
        pytest.skip("no non-loopback address and no /proc/net/tcp to check the bind address with")


def test_wrong_password_raises_authentication_failed_without_the_password(bolt: Connection) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    with pytest.raises(AuthenticationFailed) as excinfo:
        connect(bolt.uri, "root", wrong, bolt.database)
    text = str(excinfo.value) + repr(excinfo.value)
    assert wrong not in text and embedded_db.password() not in text
    assert "user 'root'" in text and bolt.uri in text
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_unknown_database_is_a_database_error(bolt: Connection) -> None:
    with pytest.raises(DatabaseError, match="'no_such_db' does not exist") as excinfo:
        connect(bolt.uri, "root", embedded_db.password(), "no_such_db")
    assert not isinstance(excinfo.value, (DatabaseUnavailable, AuthenticationFailed))


def test_connect_without_uri_uses_the_embedded_server(bolt: Connection) -> None:
    with connect(None, None, None, None) as conn:
        assert (conn.uri, conn.user, conn.database) == (bolt.uri, "root", "neurflow")
        records, _, _ = conn.driver.execute_query("RETURN 1 AS ok", database_=conn.database)
        assert records[0]["ok"] == 1


def test_managed_unwind_write_is_atomic(graph: Connection) -> None:
    rows = list(range(2000))
    # The last row divides by zero: the whole batch must roll back.
    with pytest.raises(neo4j.exceptions.ClientError):
        graph.driver.execute_query(
            "UNWIND $rows AS r CREATE (:AtomicityProbe {k: r, v: 10 / (r - 1999)})", rows=rows, database_=graph.database
        )
    assert _count(graph, "AtomicityProbe") == 0
    graph.driver.execute_query("UNWIND $rows AS r CREATE (:AtomicityProbe {k: r})", rows=rows, database_=graph.database)
    assert _count(graph, "AtomicityProbe") == len(rows)


@pytest.mark.parametrize("round_", [1, 2])
def test_graph_fixture_starts_empty(graph: Connection, round_: int) -> None:
    records, _, _ = graph.driver.execute_query("MATCH (n) RETURN count(n) AS c", database_=graph.database)
    assert records[0]["c"] == 0
    graph.driver.execute_query("CREATE (:Leftover {round: $r})", r=round_, database_=graph.database)


def test_db_marker_is_applied(request: pytest.FixtureRequest, bolt: Connection) -> None:
    assert request.node.get_closest_marker("db") is not None


# --------------------------------------------------------------------------- connect without a server


def test_unreachable_uri_raises_database_unavailable_quickly() -> None:
    uri = f"bolt://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=f"cannot reach the graph database at {uri}") as excinfo:
        connect(uri, "neo4j", "pw-not-shown-123", None)
    assert time.monotonic() - t0 < 10  # no 30 s of driver retries
    assert "pw-not-shown-123" not in str(excinfo.value)


def test_credentials_in_the_uri_are_redacted() -> None:
    uri = f"bolt://neo4j:hunter2secret@127.0.0.1:{_free_port()}"
    with pytest.raises(InputError, match="no user or password in the URI") as excinfo:
        connect(uri, None, None, None)
    assert "hunter2secret" not in str(excinfo.value)


@pytest.mark.parametrize("uri", ["http://localhost:7474", "localhost:7687", "garbage"])
def test_unsupported_uri_is_an_input_error(uri: str) -> None:
    with pytest.raises(InputError, match="unsupported graph database URI"):
        connect(uri, "neo4j", "x", None)


# --------------------------------------------------------------------------- helpers, no server


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURFLOW_HOME", str(tmp_path / "nf"))
    assert embedded_db.data_dir() == tmp_path / "nf"
    assert embedded_db.server_dir() == tmp_path / "nf" / "arcadedb"
    monkeypatch.delenv("NEURFLOW_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert embedded_db.data_dir() == tmp_path / "xdg" / "neurflow"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert embedded_db.data_dir() == tmp_path / "home" / ".local" / "share" / "neurflow"


def test_busy_default_port_falls_back_to_a_free_one() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        chosen = embedded_db._choose_port(None, busy, "Bolt")
        assert chosen != busy
        with pytest.raises(InputError, match=f"port {busy} .* is in use"):
            embedded_db._choose_port(busy, 7687, "Bolt")


@pytest.mark.parametrize("kwargs", [{"port": 0}, {"http_port": 70000}, {"timeout": 0}, {"heap_size": "lots"}])
def test_start_rejects_bad_arguments_before_starting_anything(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        embedded_db.start(**kwargs)  # type: ignore[arg-type]


def test_listening_addresses_reads_proc_net() -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert embedded_db._listening_addresses(sock.getsockname()[1]) == ["127.0.0.1"]
    assert not embedded_db._is_loopback("192.0.2.1")
    assert embedded_db._is_loopback("::ffff:127.0.0.1") and embedded_db._is_loopback("::1")


# --------------------------------------------------------------------------- CLI


def test_cli_status_json(bolt: Connection) -> None:
    result = CliRunner().invoke(main, ["db", "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert STATUS_KEYS <= set(data)
    assert data["running"] is True and data["uri"] == bolt.uri
    assert (data["user"], data["database"]) == ("root", "neurflow")
    assert Path(data["password_file"]).is_file()
    assert embedded_db.password() not in result.output


def test_cli_status_table_and_start_reuse(bolt: Connection) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["db", "status"])
    assert table.exit_code == 0, table.output
    assert "running" in table.stdout and "yes" in table.stdout and bolt.uri in table.stdout
    started = runner.invoke(main, ["db", "start", "--format", "json"])
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["pid"] == embedded_db.status().pid


def test_cli_when_not_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURFLOW_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(main, ["db", "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["running"] is False and data["uri"] is None and data["pid"] is None
    stopped = runner.invoke(main, ["db", "stop"])
    assert stopped.exit_code == 0 and "not running" in stopped.stdout


def test_cli_start_on_a_busy_port_fails_with_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURFLOW_HOME", str(tmp_path))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        result = CliRunner().invoke(main, ["db", "start", "--port", str(busy)])
    assert result.exit_code == InputError.exit_code
    assert f"Bolt port {busy}" in result.stderr and "in use" in result.stderr
    assert not embedded_db.status().running


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.db  # starts its own server
def test_lifecycle_start_outlives_its_parent_then_status_reuse_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("NEURFLOW_HOME", str(home))
    bolt_port, http_port = _free_port(), _free_port()
    # Started by a child process that exits at once: the server must keep running.
    # The child loads ingest/ as a bare package so that it skips importing the
    # neurflow package (and torch): seconds, not tens of seconds, on a busy machine.
    script = textwrap.dedent(
        f"""
        import sys, types
        pkg = types.ModuleType("nf_ingest")
        pkg.__path__ = [{str(Path(embedded_db.__file__).parent)!r}]
        sys.modules["nf_ingest"] = pkg
        from nf_ingest import embedded_db
        info = embedded_db.start(port={bolt_port}, http_port={http_port}, timeout=120, exit_with={os.getpid()})
        print(info.pid)
        """
    )
    try:
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
        assert child.returncode == 0, child.stderr[-2000:]
        pid = int(child.stdout.split()[-1])

        info = embedded_db.status()
        assert info.running and info.pid == pid and info.uri == f"bolt://127.0.0.1:{bolt_port}"
        assert info.data_dir == home / "arcadedb" and info.log_file.is_file()
        assert stat.S_IMODE(info.password_file.stat().st_mode) == 0o600
        assert (home / "arcadedb" / "log").is_dir()  # ./log written in its own folder
        assert embedded_db.start(timeout=30).pid == pid  # reuse

        with connect(None, None, None, None) as conn:
            conn.driver.execute_query("CREATE (:Lifecycle {k: 1})", database_=conn.database)
            assert _count(conn, "Lifecycle") == 1

        assert embedded_db.stop() is True
        assert not embedded_db.status().running
        assert not (home / "arcadedb" / "server.json").exists()
        assert embedded_db.stop() is False
        deadline = time.monotonic() + 10
        while embedded_db._pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not embedded_db._pid_alive(pid)
        assert "stopped" in info.log_file.read_text()
    finally:
        embedded_db.stop(timeout=10)
