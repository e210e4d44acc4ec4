"""The project's error family, re-exported where ingest code has always imported it.

Defined once in :mod:`neurflow.errors` (dependency-free, shared by core, ingest, queries).
"""

from neurflow.errors import (  # noqa: F401  (re-exports)
    ArtifactError,
    AuthenticationFailed,
    DatabaseError,
    DatabaseUnavailable,
    InputError,
    NeurflowError,
)

__all__ = ["NeurflowError", "InputError", "ArtifactError", "DatabaseError", "DatabaseUnavailable", "AuthenticationFailed"]
