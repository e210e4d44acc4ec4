"""The one place where the ``neo4j`` driver's exceptions become the project's.

Every database call in ``neurflow.ingest`` runs inside :func:`translating_errors`, so a
user sees one message family (and the CLI one exit code, 4) whatever the call site:

=====================================  ==============================  ==========================
driver exception                       project exception               message
=====================================  ==============================  ==========================
``AuthError``                          ``AuthenticationFailed``        refused credentials
``ServiceUnavailable``,                ``DatabaseUnavailable``         unreachable while ``action``
``SessionExpired``, other
``DriverError``, ``OSError``
(and ``ValueError`` while connecting)
``ClientError`` DatabaseNotFound       ``DatabaseError``               names the database
any other ``Neo4jError``               ``DatabaseError``               ``action`` failed (code): text
=====================================  ==============================  ==========================

Messages never carry query parameters or credentials (the driver's own messages carry
neither; only the server's error text and code are shown).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from neurflow.errors import (
    ArtifactError,
    AuthenticationFailed,
    DatabaseError,
    DatabaseUnavailable,
    InputError,
    NeurflowError,
)

__all__ = [
    "translating_errors", "NeurflowError", "InputError", "ArtifactError", "DatabaseError", "DatabaseUnavailable", "AuthenticationFailed",
]


@contextmanager
def translating_errors(
    action: str,
    *,
    server: str | None = None,
    user: str | None = None,
    database: str | None = None,
    hint: str = "",
    unavailable_note: str = "",
) -> Iterator[None]:
    """Run the body; re-raise the driver's exceptions as the project's.

    Args:
        action: what the body does, in words ("writing the debug evidence"); it appears in
            the messages.
        server: the server's URI with any credentials removed. Given (while connecting),
            the messages say "cannot reach the graph database at {server}" and name the
            ``user`` the server refused; without it, "the graph database became unreachable".
        user: the user name, for the refused-credentials message (with ``server``).
        database: the database name, for the database-not-found message.
        hint: appended to the unreachable message ("is it running? ...").
        unavailable_note: appended to the became-unreachable message (what the failure
            left behind, e.g. "; nothing of this class was written").

    Raises:
        AuthenticationFailed, DatabaseUnavailable, DatabaseError: see the module table. The
        driver's exception is chained (``__cause__``) except while connecting, where the
        message says everything and the chained traceback would show the URI again.
    """
    import neo4j.exceptions as nx

    try:
        yield
    except nx.AuthError as exc:
        if server is None:
            raise AuthenticationFailed() from exc
        who = f"user '{user}'" if user else "an unauthenticated connection"
        raise AuthenticationFailed(
            f"the graph database at {server} refused the credentials of {who}; check --user/--password (or NEURFLOW_USER/NEURFLOW_PASSWORD)"
        ) from None
    except nx.ClientError as exc:
        if exc.code == "Neo.ClientError.Database.DatabaseNotFound":
            where = f" at {server}" if server else ""
            raise DatabaseError(f"database '{database}' does not exist{where}; check --database / NEURFLOW_DATABASE") from None
        raise _failed(action, server, exc) from (None if server else exc)
    except (nx.ServiceUnavailable, nx.SessionExpired) as exc:
        raise _unavailable(action, server, hint, unavailable_note, _reason(exc)) from (None if server else exc)
    except nx.Neo4jError as exc:
        raise _failed(action, server, exc) from (None if server else exc)
    except (nx.DriverError, OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and server is None:
            raise  # a bug or bad input of ours, not the connection's
        raise _unavailable(action, server, hint, unavailable_note, type(exc).__name__) from (None if server else exc)


def _failed(action: str, server: str | None, exc: Exception) -> DatabaseError:
    code = getattr(exc, "code", None) or type(exc).__name__
    where = f"the graph database at {server}: " if server else ""
    message = getattr(exc, "message", None)
    return DatabaseError(f"{where}{action} failed ({code})" + (f": {message}" if message else ""))


def _unavailable(action: str, server: str | None, hint: str, note: str, reason: str) -> DatabaseUnavailable:
    if server is not None:
        return DatabaseUnavailable(f"cannot reach the graph database at {server} ({reason})" + (f"; {hint}" if hint else ""))
    return DatabaseUnavailable(f"the graph database became unreachable while {action} ({reason}){note}")


def _reason(exc: Exception) -> str:
    match = re.search(r"\(reason (.+?)\)", str(exc))
    return match.group(1).strip() if match else type(exc).__name__
