"""One exception family for everything NeurFlow raises: the core, ingest, the queries, the CLI.

This module imports nothing (the core names no database: ``DatabaseError`` is defined here
so that every layer shares one family, and only ``neurflow.ingest`` raises it).

The CLI maps :class:`NeurflowError` to its message and a non-zero exit code
(``exit_code``); messages are meant for users (what went wrong, what to do next) and
never contain credentials. A class raised without a message uses its
``default_message``.

Hierarchy::

    NeurflowError                 exit 1
    ├── InputError                exit 2
    ├── ArtifactError             exit 3   (also a ValueError, as the core raised it before)
    └── DatabaseError             exit 4
        ├── DatabaseUnavailable
        └── AuthenticationFailed
"""

from __future__ import annotations

EXIT_CODES: dict[str, int] = {}  # filled below: class name -> exit status, for the docs and the CLI

__all__ = ["EXIT_CODES", "NeurflowError", "InputError", "ArtifactError", "DatabaseError", "DatabaseUnavailable", "AuthenticationFailed"]


class NeurflowError(Exception):
    """Base class: a failure with a user-facing message.

    Args:
        message: The user-facing message; the class's ``default_message`` if omitted.

    Attributes:
        message: The user-facing message (also ``str(error)``).
        exit_code: The exit status the CLI uses for this kind of error.
    """

    default_message = "neurflow failed"
    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InputError(NeurflowError):
    """Bad user input: a missing directory, an unknown model, layer or class, ..."""

    default_message = "invalid input"
    exit_code = 2


class ArtifactError(NeurflowError, ValueError):
    """A circuit artifact is missing, incomplete or does not match its inputs."""

    default_message = "a circuit artifact is missing, incomplete or does not match its inputs"
    exit_code = 3


class DatabaseError(NeurflowError):
    """The graph database failed."""

    default_message = "the graph database reported an error"
    exit_code = 4


class DatabaseUnavailable(DatabaseError):
    """The graph database cannot be reached (or the embedded one did not start)."""

    default_message = (
        "cannot reach the graph database; start the embedded one with 'neurflow db start' "
        "or pass --uri of a running Neo4j 5"
    )


class AuthenticationFailed(DatabaseError):
    """The graph database refused the credentials."""

    default_message = "the graph database refused the credentials (check --user/--password or NEURFLOW_PASSWORD)"


for _cls in (NeurflowError, InputError, ArtifactError, DatabaseError, DatabaseUnavailable, AuthenticationFailed):
    EXIT_CODES[_cls.__name__] = _cls.exit_code
del _cls
