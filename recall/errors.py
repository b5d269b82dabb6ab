"""The RecallError hierarchy; store errors are re-exported so callers need one import."""

from __future__ import annotations

from memory_store.errors import (
    DimensionMismatchError,
    EditNotFoundError,
    IncompatibleArtifactError,
    InvalidEditError,
    StoreError,
    StoreLockedError,
)

__all__ = [
    "ArchitectureError",
    "ConfigError",
    "ConflictError",
    "DimensionMismatchError",
    "EditNotFoundError",
    "IncompatibleArtifactError",
    "InvalidEditError",
    "InvalidQueryError",
    "MemoryExistsError",
    "ModelNotAvailableError",
    "RecallError",
    "StoreError",
    "StoreLockedError",
    "UnknownBackendError",
    "UnsupportedOperationError",
]


class RecallError(Exception):
    """Root of every error recall raises itself (store errors derive from StoreError)."""


class ConfigError(RecallError, ValueError):
    """A configuration file or override is malformed, unknown or out of range."""


class UnknownBackendError(ConfigError):
    """A backend name that is not registered; the message lists the registered ones."""


class ModelNotAvailableError(RecallError):
    """A model or encoder cannot be loaded locally; the message names the pip command."""


class ArchitectureError(RecallError):
    """A model lacks something a backend needs (a chat template, a module path)."""


class UnsupportedOperationError(RecallError, NotImplementedError):
    """The backend cannot do this operation; it never silently does something else."""


class ConflictError(RecallError, ValueError):
    """An edit conflicts with an active edit and the conflict policy is 'reject'."""


class InvalidQueryError(RecallError, ValueError):
    """A question (or its answer length) that cannot be asked: wrong type, control characters, too long."""


class MemoryExistsError(RecallError, FileExistsError):
    """A new memory was asked for at a path that holds a memory (or other files) already."""
