"""Open a checked connection to the graph database (a Neo4j 5 server or the embedded one).

``connect`` makes the network call explicitly (no constructor does), verifies the
server answers ``RETURN 1`` on the chosen database, and turns the driver's failures
into the project's exceptions, whose messages never contain the password::

    with connect(None, None, None, None) as conn:          # the embedded database
        conn.driver.execute_query("MATCH (n) RETURN count(n)", database_=conn.database)

Environment variables (``NEURFLOW_URI`` ...) are read by the CLI, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import TracebackType

import neo4j
from neo4j.exceptions import ConfigurationError

from .errors import InputError
from .graph.errors import translating_errors

__all__ = ["Connection", "connect", "DEFAULT_USER"]

DEFAULT_USER = "neo4j"
_SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})


@dataclass(frozen=True)
class Connection:
    """A verified driver and the database to run queries on.

    Pass ``database_=conn.database`` to every ``execute_query``/``session`` call
    (the embedded server has no default database). Closing the connection closes
    the driver; it is also a context manager.

    Attributes:
        driver: The ``neo4j`` driver (thread-safe, pooled).
        database: The database name; None means the server's home database (Neo4j only).
        uri: The server's URI, for messages (any ``user:password@`` part removed).
        user: The user name, or None without authentication.
    """

    driver: neo4j.Driver = field(repr=False)
    database: str | None
    uri: str = ""
    user: str | None = None

    def close(self) -> None:
        """Close the driver and its connection pool."""
        self.driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    uri: str | None,
    user: str | None,
    password: str | None,
    database: str | None,
    *,
    timeout: float = 60,
) -> Connection:
    """Connect to the graph database and check that it answers.

    Args:
        uri: Bolt/Neo4j URI (``bolt://host:7687``, ``neo4j://...``). None: start or
            reuse the embedded database and use its user and password (``user`` and
            ``password`` are then ignored).
        user: User name; ``neo4j`` when only a password is given.
        password: Password; with neither user nor password, no authentication.
        database: Database name; None means the embedded database's ``neurflow``, or
            the server's home database for a given URI.
        timeout: Seconds to wait for the embedded database to start.

    Returns:
        An open, verified :class:`Connection`.

    Raises:
        InputError: The URI is malformed or has an unsupported scheme.
        DatabaseUnavailable: The server cannot be reached (or the embedded one did not start).
        AuthenticationFailed: The server refused the credentials.
        DatabaseError: The database does not exist, or another server error.
    """
    if uri is None:
        from . import embedded_db

        info = embedded_db.start(timeout=timeout)
        uri, user, password = str(info.uri), info.user, embedded_db.password()
        database = database or info.database
    shown = _redact(uri)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme not in _SCHEMES:
        raise InputError(f"unsupported graph database URI '{shown}'; use bolt://host:7687 or neo4j://host:7687 (also +s / +ssc)")
    if shown != uri:
        raise InputError(f"put no user or password in the URI '{shown}'; use --user/--password (or NEURFLOW_USER/NEURFLOW_PASSWORD)")
    auth: tuple[str, str] | None = None
    if password is not None or user is not None:
        auth = (user or DEFAULT_USER, password or "")
    try:
        driver = neo4j.GraphDatabase.driver(uri, auth=auth)
    except (ConfigurationError, ValueError) as exc:
        raise InputError(f"invalid graph database URI '{shown}': {_redact(_first_line(exc))}") from None
    try:
        _verify(driver, shown, database, auth[0] if auth else None)
    except BaseException:
        driver.close()
        raise
    return Connection(driver=driver, database=database, uri=shown, user=auth[0] if auth else None)


def _verify(driver: neo4j.Driver, shown: str, database: str | None, user: str | None) -> None:
    hint = "is it running? Start the embedded one with 'neurflow db start', or check --uri / NEURFLOW_URI"
    with translating_errors("answering 'RETURN 1'", server=shown, user=user, database=database, hint=hint):
        # verify_connectivity fails fast; execute_query alone would retry an
        # unreachable server for max_transaction_retry_time (30 s) first.
        driver.verify_connectivity()
        driver.execute_query("RETURN 1 AS ok", database_=database)


_USERINFO = re.compile(r"(?<=://)[^/@]*@")


def _redact(uri: str) -> str:
    """The URI without a ``user:password@`` part."""
    return _USERINFO.sub("", uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
