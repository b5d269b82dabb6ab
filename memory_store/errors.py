"""The StoreError hierarchy: every failure memory_store raises on purpose, each with a specific class."""

from __future__ import annotations

__all__ = [
    "CorruptStoreError",
    "DimensionMismatchError",
    "DuplicateEditError",
    "EditNotFoundError",
    "IncompatibleArtifactError",
    "InvalidArgumentError",
    "InvalidEditError",
    "InvalidTransitionError",
    "InvalidVectorError",
    "MemoryNotFoundError",
    "ReadOnlyStoreError",
    "StorageError",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
]


class StoreError(Exception):
    """Root of every error memory_store raises itself; messages say expected, received and the fix."""


class InvalidEditError(StoreError, ValueError):
    """A record field is empty, too long, holds control characters or has the wrong type."""


class InvalidArgumentError(StoreError, ValueError):
    """An argument other than a record or a vector is out of range (k <= 0, an unknown index kind)."""


class DimensionMismatchError(StoreError, ValueError):
    """A vector's last dimension differs from the memory's dim."""


class InvalidVectorError(StoreError, ValueError):
    """A vector is not a finite float array of a usable shape (NaN, inf, all zeros, wrong rank)."""


class DuplicateEditError(StoreError, ValueError):
    """An edit_id that is already stored (or repeated inside one batch)."""


class EditNotFoundError(StoreError, KeyError):
    """No record with this edit_id exists in the memory."""

    def __str__(self) -> str:
        # KeyError.__str__ repr-quotes its argument, which would wrap the whole message in quotes.
        return str(self.args[0]) if self.args else ""


class InvalidTransitionError(StoreError, ValueError):
    """A status change the record's current status does not allow (retract twice, restore an active one)."""


class IncompatibleArtifactError(StoreError):
    """A memory or sentinel was written for another dim, encoder or format version than asked for."""


class CorruptStoreError(StoreError):
    """A memory's files are damaged or inconsistent with each other (e.g. edits.sqlite without manifest)."""


class MemoryNotFoundError(StoreError, FileNotFoundError):
    """No memory (or no saved sentinel) exists at the given path."""


class StoreLockedError(StoreError):
    """Another process (or another MemoryStore in this process) holds the memory open."""


class StoreClosedError(StoreError):
    """The MemoryStore was closed; open the memory again to use it."""


class ReadOnlyStoreError(StoreError):
    """A write to a memory opened read-only (or on storage that cannot be written)."""


class StorageError(StoreError, OSError):
    """The storage refused a read or write (disk full, I/O error, no permission); nothing was committed."""
