"""One exception family for everything ingest, the CLI and the database layer raise.

The CLI maps :class:`NeurflowError` to its message and a non-zero exit code; messages are
meant for users and never contain credentials.
"""

from __future__ import annotations

__all__ = ["NeurflowError", "InputError", "ArtifactError", "DatabaseError", "DatabaseUnavailable", "AuthenticationFailed"]


class NeurflowError(Exception):
    """Base class: a failure with a user-facing message."""

    exit_code = 1


class InputError(NeurflowError):
    """Bad user input: a missing directory, an unknown model, layer or class, ..."""

    exit_code = 2


class ArtifactError(NeurflowError):
    """A circuit artifact is missing, incomplete or does not match its inputs."""

    exit_code = 3


class DatabaseError(NeurflowError):
    """The graph database failed."""

    exit_code = 4


class DatabaseUnavailable(DatabaseError):
    """The graph database cannot be reached."""


class AuthenticationFailed(DatabaseError):
    """The graph database refused the credentials."""
