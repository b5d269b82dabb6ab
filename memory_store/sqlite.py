"""edits.sqlite, the source of truth: its connections, write transactions and reads (tables in schema.py)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from memory_store.errors import (
    CorruptStoreError,
    DuplicateEditError,
    IncompatibleArtifactError,
    ReadOnlyStoreError,
    StorageError,
)
from memory_store.records import EditRecord, EventKind, HistoryEvent, Status, is_edit_id
from memory_store.schema import COLUMNS, SCHEMA, SCHEMA_VERSION, record_of_row

__all__ = ["SCHEMA_VERSION", "EditDatabase", "KeyRows", "Transaction"]

BUSY_TIMEOUT_S = 10.0


def _connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), never implicit.
    target: str | Path = _read_only_uri(path) if read_only else path
    conn = sqlite3.connect(
        target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False, uri=read_only
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only_uri(path: Path) -> str:
    """A URI that reads `path` and writes nothing. Without a write-ahead log (a memory closed cleanly)
    every commit is in the main file, so it is opened immutable: SQLite then creates no -wal or -shm
    file, which read-only storage would refuse. With one (the last writer was killed), its commits must
    be read through it: mode=ro, which needs the -shm file beside it."""
    wal = path.with_name(path.name + "-wal")
    has_log = wal.exists() and wal.stat().st_size > 0
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro{'' if has_log else '&immutable=1'}"


class KeyRows:
    """Key rows loaded in bulk: kids (n,) int64 ascending, their rids (n,) int64, vectors (n, dim) float32."""

    def __init__(self, kids: np.ndarray, rids: np.ndarray, vectors: np.ndarray | None) -> None:
        self.kids = kids
        self.rids = rids
        self.vectors = vectors

    def matrix(self) -> np.ndarray:
        if self.vectors is None:
            raise TypeError("these key rows were loaded without vectors")
        return self.vectors


class Transaction:
    """The write operations of one open BEGIN IMMEDIATE transaction on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def lookup(self, edit_id: str) -> tuple[int, EditRecord] | None:
        if not is_edit_id(edit_id):  # what no edit can have (SQLite cannot even encode a lone surrogate)
            return None
        row = self._conn.execute(
            f"SELECT rid, {COLUMNS} FROM records WHERE edit_id = ?", (edit_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), record_of_row(row[1:]))

    def insert(self, records: Sequence[EditRecord], vectors: Sequence[np.ndarray]) -> tuple[list[int], int]:
        """Insert records (each with its (n_keys, dim) float32 keys); return their rids and the first kid.

        The keys get consecutive kids from the first one, in record order.
        """
        ids = [r.edit_id for r in records]
        taken: list[str] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            taken += [
                row[0]
                for row in self._conn.execute(
                    f"SELECT edit_id FROM records WHERE edit_id IN ({marks})", chunk
                )
            ]
        if taken:
            raise DuplicateEditError(
                f"expected new edit_ids, received {len(taken)} already stored (first {taken[0]!r}); "
                "use supersede() to replace an edit, or leave edit_id to its default"
            )
        rid0 = int(self._conn.execute("SELECT COALESCE(MAX(rid), 0) FROM records").fetchone()[0]) + 1
        kid0 = int(self._conn.execute("SELECT COALESCE(MAX(kid), 0) FROM keys").fetchone()[0]) + 1
        rids = list(range(rid0, rid0 + len(records)))
        key_rows: list[tuple[int, int, bytes]] = []
        kid = kid0
        for rid, keys in zip(rids, vectors, strict=True):
            for row in keys:
                key_rows.append((kid, rid, row.tobytes()))
                kid += 1
        rows = [
            (rid, r.edit_id, r.namespace, r.prompt, r.target, r.subject, r.statement, r.created_at,
             r.status, r.supersedes, json.dumps(dict(r.meta), ensure_ascii=False))
            for rid, r in zip(rids, records, strict=True)
        ]  # fmt: skip
        try:
            self._conn.executemany(
                f"INSERT INTO records (rid, {COLUMNS}) VALUES ({','.join('?' * 11)})", rows
            )
        except sqlite3.IntegrityError as exc:  # the same edit_id twice inside this batch
            raise DuplicateEditError(f"expected distinct edit_ids, received a repeated one ({exc})") from exc
        self._conn.executemany("INSERT INTO keys (kid, rid, vec) VALUES (?, ?, ?)", key_rows)
        return rids, kid0

    def set_status(self, rid: int, status: Status) -> None:
        self._conn.execute("UPDATE records SET status = ? WHERE rid = ?", (status, rid))

    def add_events(self, events: Sequence[tuple[int, EventKind, float, str, str | None]]) -> None:
        """Append (rid, kind, at, reason, other_id) history events."""
        self._conn.executemany(
            "INSERT INTO events (rid, kind, at, reason, other_id) VALUES (?, ?, ?, ?, ?)", events
        )


class EditDatabase:
    """edits.sqlite in WAL mode with synchronous=FULL: a commit is on disk when it returns.

    One writer connection (the caller serialises writers) and a pool of reader connections; WAL lets
    readers see the last committed state while a write is in progress.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        try:
            self._writer = _connect(path, read_only)
            pragma = "PRAGMA journal_mode" if read_only else "PRAGMA journal_mode = WAL"
            mode = self._writer.execute(pragma).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if read_only:  # a write-ahead log to read, and no -shm file beside it on read-only storage
                raise ReadOnlyStoreError(
                    f"{str(path)!r} holds commits in its write-ahead log that read-only access cannot "
                    f"read ({exc}); open the memory once on writable storage, then close it"
                ) from exc
            raise StorageError(
                f"cannot open {str(path)!r} ({exc}): the storage is full, failing or not writable; free "
                "space or check it (the memory itself is not known to be damaged)"
            ) from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database"
            raise CorruptStoreError(
                f"{str(path)!r} expected an SQLite database, received an error: {exc}"
            ) from exc
        if str(mode).lower() != "wal" and not read_only:  # immutable reads report "delete"
            self._writer.close()
            raise CorruptStoreError(f"{str(path)!r} expected journal_mode 'wal', received {mode!r}")
        self._pool: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()

    # ----------------------------------------------------------------- schema
    def initialize(self, dim: int, store_id: str) -> None:
        """Create the schema and meta rows of a new memory (idempotent on a half-created one)."""
        with self.transaction():
            # Not executescript: it would COMMIT first and run the statements outside this transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._writer.execute(statement)
            self._writer.execute("DELETE FROM schema_version")
            self._writer.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            self._writer.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("dim", str(dim)), ("store_id", store_id)],
            )

    def is_empty_or_blank(self) -> bool:
        """True when the file holds no records table or no records (a creation that crashed half-way)."""
        row = self._writer.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
        ).fetchone()
        return row is None or self._writer.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0

    def check_schema(self) -> dict[str, str]:
        """Return the meta rows after checking the schema version; raise if unknown or missing."""
        try:
            version = self._writer.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            meta = dict(self._writer.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(
                f"{str(self.path)!r} expected a memory_store database, received one without its tables "
                f"({exc})"
            ) from exc
        if version != SCHEMA_VERSION:
            raise IncompatibleArtifactError(
                f"{str(self.path)!r} expected schema version {SCHEMA_VERSION}, received {version!r}; "
                "open it with the memory_store version that wrote it"
            )
        return {str(k): str(v) for k, v in meta.items()}

    # ----------------------------------------------------------------- writes
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT; any exception rolls everything back and propagates (SQLite's
        operational errors, such as a full disk, as StorageError)."""
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{str(self.path.parent)!r} is open read-only; open it without read_only to change it"
            )
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._writer)
                self._writer.execute("COMMIT")
            except BaseException:
                # A failed body or COMMIT (disk full, I/O error) must not leave the transaction open for
                # the next write. If SQLite already rolled back, ROLLBACK itself errors: ignore that.
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._storage_error(exc) from exc

    def _storage_error(self, exc: sqlite3.OperationalError) -> StorageError:
        return StorageError(
            f"the memory at {str(self.path.parent)!r} could not be written ({exc}); nothing was changed: "
            "free disk space or check the storage, then try again"
        )

    # ----------------------------------------------------------------- reads
    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection for this thread's use until the block ends."""
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = _connect(self.path, self.read_only)
            conn.execute("PRAGMA query_only = ON")
            with self._pool_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            with self._pool_lock:
                self._pool.append(conn)

    def get(self, edit_id: str) -> EditRecord | None:
        with self.reader() as conn:
            row = conn.execute(f"SELECT {COLUMNS} FROM records WHERE edit_id = ?", (edit_id,)).fetchone()
        return None if row is None else record_of_row(row)

    def by_rid(self, rids: Sequence[int]) -> dict[int, EditRecord]:
        out: dict[int, EditRecord] = {}
        with self.reader() as conn:
            if len(rids) == 1:  # the common k=1 lookup, without building an IN list
                row = conn.execute(f"SELECT {COLUMNS} FROM records WHERE rid = ?", (rids[0],)).fetchone()
                return {} if row is None else {rids[0]: record_of_row(row)}
            for start in range(0, len(rids), 500):
                chunk = list(rids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT rid, {COLUMNS} FROM records WHERE rid IN ({marks})", chunk):
                    out[int(row[0])] = record_of_row(row[1:])
        return out

    def _where(self, namespace: str | None, status: Status | None) -> tuple[str, list[str]]:
        clauses = [(c, v) for c, v in (("namespace = ?", namespace), ("status = ?", status)) if v is not None]
        sql = (" WHERE " + " AND ".join(c for c, _ in clauses)) if clauses else ""
        return sql, [v for _, v in clauses if v is not None]

    def list_records(self, namespace: str | None, status: Status | None) -> list[EditRecord]:
        where, params = self._where(namespace, status)
        with self.reader() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM records{where} ORDER BY created_at, rid", params
            ).fetchall()
        return [record_of_row(row) for row in rows]

    def count(self, namespace: str | None, status: Status | None) -> int:
        where, params = self._where(namespace, status)
        with self.reader() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM records{where}", params).fetchone()[0])

    def count_keys(self) -> int:
        with self.reader() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM keys INDEXED BY keys_rid").fetchone()[0])

    def namespaces(self) -> list[str]:
        with self.reader() as conn:
            return [
                str(r[0]) for r in conn.execute("SELECT DISTINCT namespace FROM records ORDER BY namespace")
            ]

    def history(self, edit_id: str) -> list[HistoryEvent] | None:
        with self.reader() as conn:
            row = conn.execute("SELECT rid FROM records WHERE edit_id = ?", (edit_id,)).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT kind, at, reason, other_id FROM events WHERE rid = ? ORDER BY eid", (row[0],)
            ).fetchall()
        return [
            HistoryEvent(edit_id, kind, float(at), str(reason), other) for kind, at, reason, other in rows
        ]

    def vectors(self, edit_id: str, dim: int) -> np.ndarray | None:
        with self.reader() as conn:
            row = conn.execute("SELECT rid FROM records WHERE edit_id = ?", (edit_id,)).fetchone()
            if row is None:
                return None
            blobs = [r[0] for r in conn.execute("SELECT vec FROM keys WHERE rid = ? ORDER BY kid", (row[0],))]
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()

    def vectors_by_kid(self, kids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        marks = ",".join("?" * len(kids))
        with self.reader() as conn:
            rows = conn.execute(f"SELECT kid, vec FROM keys WHERE kid IN ({marks})", list(kids)).fetchall()
        return {int(kid): np.frombuffer(blob, dtype=np.float32) for kid, blob in rows if len(blob) == dim * 4}

    def record_groups(self) -> list[tuple[str, str, np.ndarray]]:
        """Every record's rid, grouped by (namespace, status), from the covering (namespace, status) index.

        One query per group returns bare integers, far cheaper than a (rid, namespace, status) tuple
        per record at 10^6 records.
        """
        out: list[tuple[str, str, np.ndarray]] = []
        with self.reader() as conn:
            groups = conn.execute(
                "SELECT DISTINCT namespace, status FROM records INDEXED BY records_namespace_status"
            )
            for namespace, status in groups.fetchall():
                cursor = conn.execute(
                    "SELECT rid FROM records INDEXED BY records_namespace_status "
                    "WHERE namespace = ? AND status = ?",
                    (namespace, status),
                )
                rids = np.fromiter((row[0] for row in cursor), dtype=np.int64)
                out.append((str(namespace), str(status), rids))
        return out

    def key_rows(self, dim: int, *, after_kid: int = 0, with_vectors: bool = True) -> KeyRows:
        """All key rows with kid > after_kid, in kid order; vectors are read in bulk into one array."""
        with self.reader() as conn:
            if not with_vectors:
                # The (rid) index covers (rid, kid) and is far smaller than the table with its blobs.
                pairs = conn.execute(
                    "SELECT kid, rid FROM keys INDEXED BY keys_rid WHERE kid > ?", (after_kid,)
                )
                arr = np.array(pairs.fetchall(), dtype=np.int64).reshape(-1, 2)
                arr = arr[np.argsort(arr[:, 0], kind="stable")]
                return KeyRows(arr[:, 0].copy(), arr[:, 1].copy(), None)
            total = conn.execute(
                "SELECT COUNT(*) FROM keys INDEXED BY keys_rid WHERE kid > ?", (after_kid,)
            ).fetchone()[0]
            # Blobs are copied straight into one preallocated array: joining and concatenating chunks
            # would copy 1.5 GB twice more at 10^6 keys.
            if not total:
                return KeyRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
            vectors = np.empty((total, dim), np.float32)
            target = memoryview(vectors.data).cast("B")
            width = dim * 4
            kids: list[int] = []
            rids: list[int] = []
            cursor = conn.execute("SELECT kid, rid, vec FROM keys WHERE kid > ? ORDER BY kid", (after_kid,))
            end = 0
            try:
                for kid, rid, blob in cursor:  # the hot loop of an open: keep it minimal
                    target[end : end + width] = blob  # ValueError unless exactly `width` bytes fit here
                    end += width
                    kids.append(kid)
                    rids.append(rid)
            except ValueError as exc:
                raise CorruptStoreError(
                    f"{str(self.path)!r}: key vectors expected {total} blobs of {width} bytes "
                    f"({dim} float32), received a blob of another size (or more rows than counted) at row "
                    f"{len(kids)}"
                ) from exc
        if len(kids) != total:
            raise CorruptStoreError(f"{str(self.path)!r}: expected {total} key rows, read {len(kids)}")
        return KeyRows(np.array(kids, dtype=np.int64), np.array(rids, dtype=np.int64), vectors)

    def close(self) -> None:
        with self._pool_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._pool.clear()
        self._writer.close()
