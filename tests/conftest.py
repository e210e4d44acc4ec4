"""Database fixtures shared by the whole suite (other fixtures live in subfolders' conftests).

* ``bolt`` (session): ONE embedded Bolt server (ArcadeDB) for the whole run, in a
  temporary ``NEURFLOW_HOME`` on free ports, stopped at the end (also on failure;
  it also stops itself if the test process dies). Yields a
  :class:`neurflow.ingest.connection.Connection`.
* ``graph`` (function): the same connection after ``MATCH (n) DETACH DELETE n``.
  Schema (constraints, indexes) is not wiped.

Tests that use either fixture get the ``db`` marker automatically
(``pytest -m "not db"`` skips them).

For the whole session ``NEURFLOW_HOME`` points at a temporary folder and the
``NEURFLOW_URI/USER/PASSWORD/DATABASE`` variables are removed, so no test touches
the user's own data folder or graph database; an embedded server that any test
starts there is stopped at the end.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from neurflow.ingest.connection import Connection

_DB_FIXTURES = frozenset({"bolt", "graph"})
_CLI_DB_ENV = ("NEURFLOW_URI", "NEURFLOW_USER", "NEURFLOW_PASSWORD", "NEURFLOW_DATABASE")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def neurflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private NEURFLOW_HOME for the session, without the user's NEURFLOW_* DB settings."""
    home = tmp_path_factory.mktemp("neurflow_home")
    saved = {key: os.environ.get(key) for key in ("NEURFLOW_HOME", *_CLI_DB_ENV)}
    os.environ["NEURFLOW_HOME"] = str(home)
    for key in _CLI_DB_ENV:
        os.environ.pop(key, None)
    try:
        yield home
    finally:
        try:
            from neurflow.ingest import embedded_db

            embedded_db.stop(timeout=20)  # a server some test started without `bolt`
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def bolt(neurflow_home: Path) -> Iterator[Connection]:
    """One embedded Bolt server for the session; yields an open ``Connection``."""
    from neurflow.ingest import embedded_db
    from neurflow.ingest.connection import connect

    # Free ports, unless an earlier test already started a server in this home.
    ports = {} if embedded_db.status().running else {"port": _free_port(), "http_port": _free_port()}
    try:
        info = embedded_db.start(**ports, timeout=120, exit_with=os.getpid())
        conn = connect(info.uri, info.user, embedded_db.password(), info.database)
    except BaseException:
        embedded_db.stop(timeout=20)
        raise
    try:
        yield conn
    finally:
        conn.close()
        embedded_db.stop(timeout=20)


@pytest.fixture
def graph(bolt: Connection) -> Connection:
    """The session connection on an empty graph (all nodes and relationships deleted)."""
    bolt.driver.execute_query("MATCH (n) DETACH DELETE n", database_=bolt.database)
    return bolt


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the embedded server with ``db``."""
    for item in items:
        if _DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
