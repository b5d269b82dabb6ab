"""memory_store: a durable, crash-safe edit store with vector search, history and sentinels."""

from __future__ import annotations

from memory_store.errors import (
    CorruptStoreError,
    DimensionMismatchError,
    DuplicateEditError,
    EditNotFoundError,
    IncompatibleArtifactError,
    InvalidArgumentError,
    InvalidEditError,
    InvalidTransitionError,
    InvalidVectorError,
    MemoryNotFoundError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
    StoreError,
    StoreLockedError,
)
from memory_store.records import (
    MIN_ID_PREFIX,
    EditRecord,
    HistoryEvent,
    SearchHit,
    Status,
    check_text,
    new_edit_id,
    validate_namespace,
    validate_record,
)
from memory_store.sentinel import FixedSentinel, LearnedSentinel, Sentinel, load_sentinel
from memory_store.store import MemoryStore

__all__ = [
    "MIN_ID_PREFIX",
    "CorruptStoreError",
    "DimensionMismatchError",
    "DuplicateEditError",
    "EditNotFoundError",
    "EditRecord",
    "FixedSentinel",
    "HistoryEvent",
    "IncompatibleArtifactError",
    "InvalidArgumentError",
    "InvalidEditError",
    "InvalidTransitionError",
    "InvalidVectorError",
    "LearnedSentinel",
    "MemoryNotFoundError",
    "MemoryStore",
    "ReadOnlyStoreError",
    "SearchHit",
    "Sentinel",
    "Status",
    "StorageError",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
    "check_text",
    "load_sentinel",
    "new_edit_id",
    "validate_namespace",
    "validate_record",
]
