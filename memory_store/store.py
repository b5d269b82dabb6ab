"""MemoryStore: the durable, crash-safe edit store with vector search, history and status changes.

A memory is a directory: `manifest.json` (dim, encoder id, caller's extra settings), `edits.sqlite`
(the source of truth, WAL + synchronous=FULL: an edit is on disk when `add` returns), `lock`, and for
HNSW an `index.faiss` cache. The faiss index lives in memory and is changed only after the SQLite
transaction commits, so a failed call leaves both unchanged.

Index persistence: a flat index is rebuilt from SQLite on every open (one bulk read of the key blobs).
HNSW takes minutes to build for 10^6 keys on 2 cores, so it is also written to `index.faiss` on close
(and right after a large rebuild). On open the cache is used only if its key ids are exactly the first
ids of SQLite's (keys are append-only) and spot-checked vectors match byte for byte; keys added since
(e.g. before a crash) are then inserted, and any other cache is ignored and rebuilt.

Concurrency: within a process a MemoryStore is thread-safe (searches and reads run concurrently;
writers are serialised and block readers only while the in-memory index changes). Across processes a
memory is exclusive: open() takes a non-blocking `flock` on `<memory>/lock` and a second opener, in
another process or the same one, gets StoreLockedError naming the holder's pid. The kernel releases
the lock when its holder dies, even by SIGKILL, so a crash never locks a memory out.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np

from memory_store.catalog import Catalog
from memory_store.errors import (
    CorruptStoreError,
    EditNotFoundError,
    InvalidArgumentError,
    ReadOnlyStoreError,
    StoreClosedError,
)
from memory_store.index import IndexKind, VectorIndex
from memory_store.layout import open_layout
from memory_store.loader import INDEX_CACHE_NAME, load_state, verify_state
from memory_store.locks import ProcessLock, ReadWriteLock
from memory_store.manifest import write_manifest
from memory_store.records import (
    MAX_TEXT_CHARS,
    EditRecord,
    EventKind,
    HistoryEvent,
    SearchHit,
    Status,
    check_filter,
    check_text,
    is_edit_id,
    namespace_filter,
    positive_int,
    transition,
    validate_new,
)
from memory_store.search import filtered_search
from memory_store.sqlite import EditDatabase
from memory_store.vectors import key_array, key_arrays, query_array

__all__ = ["MemoryStore"]

log = logging.getLogger(__name__)

IndexMode = Literal["auto", "flat", "hnsw"]
T = TypeVar("T")


class MemoryStore:
    """A memory directory opened for reading and writing; create or open one with `MemoryStore.open`."""

    def __init__(
        self, path: Path, manifest: dict[str, Any], db: EditDatabase, lock: ProcessLock, *,
        index_mode: IndexMode, hnsw_min_rows: int, max_text_chars: int,
    ) -> None:  # fmt: skip
        self.path = path
        self._manifest = manifest
        self.dim: int = int(manifest["dim"])
        self.encoder_id: str | None = manifest["encoder_id"]
        self._db = db
        self._lock = lock
        self._index_mode = index_mode
        self._hnsw_min_rows = hnsw_min_rows
        self.max_text_chars = max_text_chars
        self.read_only = db.read_only
        self._write_lock = threading.RLock()  # one writer at a time (SQLite writer connection, index changes)
        self._rw = ReadWriteLock()  # index and catalog: many searches, or one writer applying a commit
        self._closed = False
        kind: IndexKind = "hnsw" if index_mode == "hnsw" else "flat"
        if index_mode == "auto" and db.count_keys() >= hnsw_min_rows:
            kind = "hnsw"
        state = load_state(db, self.dim, kind, path / INDEX_CACHE_NAME)
        self._index: VectorIndex = state.index
        self._catalog: Catalog = state.catalog
        self._cached_rows = state.cached_rows
        if kind == "hnsw" and self._index.ntotal - self._cached_rows > max(10_000, self._index.ntotal // 10):
            self._save_index_cache()  # an expensive rebuild: keep it, even if this process later crashes

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, dim: int | None = None, encoder_id: str | None = None,
        create: bool = False, index: IndexMode = "auto", hnsw_min_rows: int = 50_000,
        max_text_chars: int = MAX_TEXT_CHARS, read_only: bool = False,
    ) -> MemoryStore:  # fmt: skip
        """Open the memory at `path`; with `create=True` make it first if it does not exist (needs `dim`).
        `read_only` writes no file (storage that cannot be written); writes raise ReadOnlyStoreError.

        Raises MemoryNotFoundError (nothing there and create=False), IncompatibleArtifactError (dim or
        encoder_id differ from the manifest), StoreLockedError (another process has it open).
        """
        if index not in ("auto", "flat", "hnsw"):
            raise InvalidArgumentError(f"index expected 'auto', 'flat' or 'hnsw', received {index!r}")
        positive_int("hnsw_min_rows", hnsw_min_rows)
        positive_int("max_text_chars", max_text_chars)
        if dim is not None:
            positive_int("dim", dim)
        if encoder_id is not None and not isinstance(encoder_id, str):
            raise InvalidArgumentError(f"encoder_id expected a str or None, received {encoder_id!r}")
        directory = Path(path)
        manifest, db, lock = open_layout(
            directory, dim=dim, encoder_id=encoder_id, create=create, read_only=read_only
        )
        try:
            return cls(
                directory, manifest, db, lock,
                index_mode=index, hnsw_min_rows=hnsw_min_rows, max_text_chars=max_text_chars,
            )  # fmt: skip
        except BaseException:
            db.close()
            lock.release()
            raise

    def close(self) -> None:
        """Persist the HNSW cache if it is behind, close SQLite and release the lock; idempotent."""
        with self._write_lock, self._rw.write():
            if self._closed:
                return
            self._closed = True
            try:
                if self._index.kind == "hnsw" and self._index.ntotal != self._cached_rows:
                    self._save_index_cache()
            finally:
                self._db.close()
                self._lock.release()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._index.kind}, {self._catalog.num_records} records"
        return f"MemoryStore({str(self.path)!r}, dim={self.dim}, {state})"

    def _save_index_cache(self) -> None:
        if self.read_only:
            return  # writes no file; the next writable open rebuilds or tops up the cache
        try:
            self._index.save(self.path / INDEX_CACHE_NAME)
            self._cached_rows = self._index.ntotal
        except (OSError, RuntimeError) as exc:  # only a cache: the next open rebuilds from SQLite
            log.warning("could not write the index cache in %s: %s", self.path, exc)

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreClosedError(
                f"memory at {str(self.path)!r} expected to be open for {operation}(), received a closed "
                "store; open it again with MemoryStore.open(path)"
            )

    # ------------------------------------------------------------------ manifest
    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of manifest.json's content (change `extra` through update_manifest)."""
        return copy.deepcopy(self._manifest)

    def update_manifest(self, extra: Mapping[str, Any]) -> None:
        """Merge `extra` into manifest["extra"] and rewrite the manifest atomically."""
        if not isinstance(extra, Mapping) or not all(isinstance(key, str) for key in extra):
            raise InvalidArgumentError(f"extra expected a mapping with str keys, received {extra!r:.200}")
        with self._write_lock:
            self._check_open("update_manifest")
            if self.read_only:
                raise ReadOnlyStoreError(f"{str(self.path)!r} is open read-only; its manifest cannot change")
            updated = copy.deepcopy(self._manifest)
            updated["extra"].update(copy.deepcopy(dict(extra)))
            write_manifest(self.path, updated)
            self._manifest = updated

    @property
    def sentinel_dir(self) -> Path:
        """Where the store's sentinel is saved (Sentinel.save / load_sentinel)."""
        return self.path / "sentinel"

    # ------------------------------------------------------------------ writes
    def add(self, record: EditRecord, vector: np.ndarray) -> EditRecord:
        """Store one edit with its key(s), shape (dim,) or (n_keys, dim); durable when this returns."""
        return self.add_many([record], [vector])[0]

    def add_many(
        self, records: Sequence[EditRecord], vectors: Sequence[np.ndarray] | np.ndarray
    ) -> list[EditRecord]:
        """Store edits in one transaction: all or none. Every record and vector is validated first."""
        self._check_open("add_many")
        records = list(records)
        for record in records:
            validate_new(record, self.max_text_chars)
        keys = key_arrays(vectors, len(records), self.dim)
        if not records:
            return []
        with self._write_lock:
            self._check_open("add_many")
            now = time.time()
            with self._db.transaction() as tx:
                rids, first_kid = tx.insert(records, keys)
                tx.add_events(
                    [(rid, "add", now, "", r.supersedes) for rid, r in zip(rids, records, strict=True)]
                )
            self._apply_insert(rids, first_kid, records, keys)
        return records

    def supersede(
        self, old_id: str, new_record: EditRecord, vector: np.ndarray, reason: str = ""
    ) -> EditRecord:
        """Replace an active edit in one transaction: the old one becomes superseded, `new_record` is
        added (active, with supersedes=old_id) and both get a history event."""
        self._check_open("supersede")
        check_text("reason", reason, max_chars=self.max_text_chars, required=False)
        validate_new(new_record, self.max_text_chars)
        keys = key_array(vector, self.dim)
        new = dataclasses.replace(new_record, supersedes=old_id)
        with self._write_lock:
            self._check_open("supersede")
            now = time.time()
            with self._db.transaction() as tx:
                old_rid, old = self._found(tx.lookup(old_id), old_id)
                old_status = transition(old, "supersede")
                rids, first_kid = tx.insert([new], [keys])
                tx.set_status(old_rid, old_status)
                tx.add_events(
                    [(old_rid, "supersede", now, reason, new.edit_id), (rids[0], "add", now, reason, old_id)]
                )
            self._apply_insert(rids, first_kid, [new], [keys], changed=(old_rid, "superseded"))
        return new

    def retract(self, edit_id: str, reason: str = "") -> EditRecord:
        """Take an edit out of search (active or superseded -> retracted); history keeps it."""
        return self._change_status(edit_id, "retract", reason)

    def restore(self, edit_id: str, reason: str = "") -> EditRecord:
        """Make a retracted or superseded edit active again (an edit that superseded it stays active)."""
        return self._change_status(edit_id, "restore", reason)

    def _change_status(self, edit_id: str, operation: EventKind, reason: str) -> EditRecord:
        self._check_open(operation)
        check_text("reason", reason, max_chars=self.max_text_chars, required=False)
        with self._write_lock:
            self._check_open(operation)
            with self._db.transaction() as tx:
                rid, record = self._found(tx.lookup(edit_id), edit_id)
                status = transition(record, operation)
                tx.set_status(rid, status)
                tx.add_events([(rid, operation, time.time(), reason, None)])
            with self._rw.write():
                self._catalog.set_status(rid, status)
        return dataclasses.replace(record, status=status)

    def _found(self, found: T | None, edit_id: object) -> T:
        """`found`, unless it is None: then EditNotFoundError naming the id."""
        if found is None:
            raise EditNotFoundError(
                f"expected an edit_id stored in the memory at {str(self.path)!r}, received {edit_id!r}; "
                "list() shows the stored edits"
            )
        return found

    def _apply_insert(
        self, rids: list[int], first_kid: int, records: Sequence[EditRecord],
        keys: Sequence[np.ndarray], changed: tuple[int, Status] | None = None,
    ) -> None:  # fmt: skip
        """Mirror a committed insert in the index and catalog; switch to HNSW when auto says so."""
        counts = np.array([len(k) for k in keys], dtype=np.int64)
        kids = np.arange(first_kid, first_kid + int(counts.sum()), dtype=np.int64)  # one consecutive run
        key_rids = np.repeat(np.array(rids, dtype=np.int64), counts)
        stacked = np.concatenate(keys) if len(keys) > 1 else keys[0]
        with self._rw.write():
            self._index.add(kids, stacked)
            by_namespace: dict[str, list[int]] = {}
            for rid, record in zip(rids, records, strict=True):
                by_namespace.setdefault(record.namespace, []).append(rid)
            groups = [(ns, "active", np.array(ids, dtype=np.int64)) for ns, ids in by_namespace.items()]
            self._catalog.add(groups, kids, key_rids)
            if changed is not None:
                self._catalog.set_status(*changed)
        if (
            self._index_mode == "auto"
            and self._index.kind == "flat"
            and self._index.ntotal >= self._hnsw_min_rows
        ):
            # Built outside the readers' lock (searches keep using the flat index meanwhile); the writer
            # lock we hold keeps other writes out, so no row can be missed.
            log.info("switching to an HNSW index at %d keys", self._index.ntotal)
            hnsw = self._index.to_hnsw()
            with self._rw.write():
                self._index = hnsw

    # ------------------------------------------------------------------ reads
    def search(
        self, queries: np.ndarray, k: int = 1, namespace: str | Sequence[str] | None = "default"
    ) -> list[list[SearchHit]]:
        """Top-k active edits per query (one hit per edit: the max over its keys), best first.

        `queries` is (m, dim) or (dim,); the result always has m lists. `namespace` is one name, several,
        or None for all. Scores are raw inner products; fewer than k hits only when fewer edits qualify.
        """
        self._check_open("search")
        positive_int("k", k)
        names = namespace_filter(namespace)
        matrix = query_array(queries, self.dim)
        with self._rw.read():
            self._check_open("search")
            found = filtered_search(self._index, self._catalog, matrix, k, self._catalog.codes(names))
            records = self._db.by_rid(sorted({rid for hits in found for rid, _ in hits}))
        # The search saw these edits active; a status change committed a moment later must not leak into
        # this result with a half-applied status.
        return [
            [SearchHit(dataclasses.replace(records[rid], status="active"), score, rank)
             for rank, (rid, score) in enumerate(hits)]
            for hits in found
        ]  # fmt: skip

    def get(self, edit_id: str) -> EditRecord:
        """The record with this edit_id, whatever its status."""
        return self._read_edit("get", edit_id, self._db.get)

    def vectors(self, edit_id: str) -> np.ndarray:
        """The edit's keys as stored, (n_keys, dim) float32."""
        return self._read_edit("vectors", edit_id, lambda e: self._db.vectors(e, self.dim))

    def history(self, edit_id: str) -> list[HistoryEvent]:
        """Every add/supersede/retract/restore of this edit, oldest first."""
        return self._read_edit("history", edit_id, self._db.history)

    def _read_edit(self, operation: str, edit_id: str, read: Callable[[str], T | None]) -> T:
        """`read(edit_id)` under the readers' lock; EditNotFoundError for an unknown or malformed id."""
        with self._rw.read():
            self._check_open(operation)
            found = read(edit_id) if is_edit_id(edit_id) else None
        return self._found(found, edit_id)

    def namespaces(self) -> list[str]:
        """Every namespace holding at least one record (of any status), sorted."""
        with self._rw.read():
            self._check_open("namespaces")
            return self._db.namespaces()

    def verify(self) -> None:
        """Raise CorruptStoreError unless the in-memory index and catalog match SQLite exactly.

        Waits for in-flight writes, then reads every key vector: a check for tests and tooling.
        """
        with self._write_lock, self._rw.read():
            self._check_open("verify")
            problems = verify_state(self._db, self._index, self._catalog)
        if problems:
            raise CorruptStoreError(
                f"memory at {str(self.path)!r} expected index == SQLite, found: {problems}"
            )

    @property
    def index_kind(self) -> str:
        """'flat' or 'hnsw': the index in use now."""
        return self._index.kind

    # list() shadows the builtin inside this class body, so it comes last.
    def list(self, namespace: str | None = None, status: Status | None = "active") -> list[EditRecord]:
        """Records oldest first (by created_at), filtered by namespace and status (None = any)."""
        check_filter(namespace, status)
        with self._rw.read():
            self._check_open("list")
            return self._db.list_records(namespace, status)

    def count(self, namespace: str | None = None, status: Status | None = "active") -> int:
        """Number of records matching the filters of `list`."""
        check_filter(namespace, status)
        with self._rw.read():
            self._check_open("count")
            return self._db.count(namespace, status)
