"""The in-memory faiss index over key vectors (exact flat or HNSW, inner product) and its cache file."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from memory_store.files import atomic_write, atomic_write_json, file_sha256

__all__ = ["HNSW_EF_CONSTRUCTION", "HNSW_EF_SEARCH", "HNSW_M", "IndexKind", "VectorIndex", "single_thread"]

log = logging.getLogger(__name__)
_faiss: Any = faiss  # for SWIG names faiss's stubs do not declare

IndexKind = Literal["flat", "hnsw"]
HNSW_M = 32
# faiss's default (40) is below the 2 * M = 64 links a level-0 node may keep and leaves the graph
# under-connected. Measured on the bench's 1M clustered keys (recall@1 against exact search):
# efConstruction 64 -> 0.970 at efSearch 128 and 0.990 at 256; 96 -> 0.995 at 128 (build ~1.3x of 64's).
HNSW_EF_CONSTRUCTION = 96
# The smallest of the bench's sweep that keeps recall@1 >= 0.99 at 1M keys (`python -m memory_store.bench`).
HNSW_EF_SEARCH = 128
# A batch this small gains nothing from OpenMP; on a busy 2-core machine the fork-join barrier of a
# second thread adds milliseconds of jitter to a sub-millisecond search.
_SMALL_BATCH = 8
_ADD_CHUNK = 100_000


@contextlib.contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """Run faiss calls of this thread on one OpenMP thread (libgomp keeps this setting per thread)."""
    if not enabled:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _new_faiss_index(dim: int, kind: IndexKind) -> Any:
    inner: Any  # faiss's stubs miss much of the SWIG API (hnsw, storage, get_xb, id_map)
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    else:
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    # faiss's Python wrapper keeps a reference to `inner` inside the IndexIDMap2 object.
    return faiss.IndexIDMap2(inner)


class VectorIndex:
    """faiss IndexIDMap2 whose ids are the SQLite key ids (kid); scores are raw inner products.

    Keys are only ever appended (a retracted edit keeps its keys and is filtered at search time), so
    position i of the storage holds `kids[i]` and kids ascend. Not thread-safe: the store serialises
    `add` against `search` with its readers-writer lock.
    """

    def __init__(
        self, dim: int, kind: IndexKind, index: Any | None = None, kids: np.ndarray | None = None
    ) -> None:
        self.dim = dim
        self.kind: IndexKind = kind
        self._index = _new_faiss_index(dim, kind) if index is None else index
        # Grown by doubling so a stream of single adds costs amortised O(1), not a full copy each.
        self._kids = np.zeros(1024, np.int64) if kids is None else kids
        self.ef_search = HNSW_EF_SEARCH

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def kids(self) -> np.ndarray:
        """Key ids in storage order (ascending); a read-only view."""
        view = self._kids[: self.ntotal]
        view.flags.writeable = False
        return view

    def add(self, kids: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows; `kids` must be larger than every kid already indexed."""
        if not len(kids):
            return
        if self.ntotal and int(kids[0]) <= int(self._kids[self.ntotal - 1]):
            raise AssertionError(f"kids must ascend: {int(kids[0])} after {int(self._kids[self.ntotal - 1])}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        start = self.ntotal
        end = start + len(kids)
        if end > len(self._kids):
            grown = np.zeros(max(end, 2 * len(self._kids)), np.int64)
            grown[:start] = self._kids[:start]
            self._kids = grown
        kids = np.ascontiguousarray(kids, dtype=np.int64)
        # One call for flat: every call regrows faiss's storage vector, so chunks would copy it again and
        # again. HNSW is built in chunks only to report progress on a build that takes minutes at 10^6.
        chunk = _ADD_CHUNK if self.kind == "hnsw" else len(kids)
        for c0 in range(0, len(kids), chunk):
            self._index.add_with_ids(vectors[c0 : c0 + chunk], kids[c0 : c0 + chunk])
            if len(kids) > chunk:
                log.info("indexed %d/%d keys (%s)", min(c0 + chunk, len(kids)), len(kids), self.kind)
        self._kids[start:end] = kids

    def search(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`fetch` rows per query: (scores (m, fetch) float32, kids (m, fetch) int64, -1 = none)."""
        fetch = max(1, min(fetch, self.ntotal))
        with single_thread(len(queries) < _SMALL_BATCH):
            if self.kind == "hnsw":
                params = _faiss.SearchParametersHNSW()
                params.efSearch = max(self.ef_search, fetch)  # HNSW returns at most efSearch results
                scores, kids = self._index.search(queries, fetch, params=params)
            else:
                scores, kids = self._index.search(queries, fetch)
        return scores, kids

    def storage(self) -> np.ndarray:
        """A zero-copy (ntotal, dim) view of the stored vectors; valid only until the next `add`."""
        inner: Any = faiss.downcast_index(self._index.index)
        flat: Any = inner if self.kind == "flat" else faiss.downcast_index(inner.storage)
        if not self.ntotal:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim).reshape(self.ntotal, self.dim)

    def reconstruct(self, kid: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(int(kid)), dtype=np.float32)

    def to_hnsw(self) -> VectorIndex:
        """A new HNSW index over the same rows (slow: the caller builds it outside the readers' lock)."""
        out = VectorIndex(self.dim, "hnsw")
        out.add(self.kids.copy(), self.storage())
        return out

    # ------------------------------------------------------------------ cache file
    def save(self, path: Path) -> None:
        """Write the index atomically to `path` (used for HNSW, whose rebuild is slow), then its sha256
        beside it (`<path>.sha256.json`): `load` refuses a file whose bytes changed since."""
        atomic_write(path, lambda tmp: faiss.write_index(self._index, str(tmp)))
        atomic_write_json(_digest_path(path), {"sha256": file_sha256(path)})

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex | None:
        """Read a cache file written by `save`; None (and a log line) when it is missing or unusable."""
        if not path.exists():
            return None
        try:
            recorded = json.loads(_digest_path(path).read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != file_sha256(path):  # altered, torn between the two writes, or from older code
            log.warning(
                "ignoring index cache %s: its sha256 is not the one recorded when it was written", path
            )
            return None
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            log.warning("ignoring unreadable index cache %s: %s", path, exc)
            return None
        index: Any = raw
        inner: Any = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if (
            not isinstance(inner, faiss.IndexHNSWFlat)
            or index.d != dim
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            log.warning("ignoring index cache %s: not an inner-product HNSW IndexIDMap2 of dim %d", path, dim)
            return None
        kids = faiss.vector_to_array(index.id_map).astype(np.int64)
        if len(kids) > 1 and not bool(np.all(kids[1:] > kids[:-1])):
            log.warning("ignoring index cache %s: its ids do not ascend", path)
            return None
        inner.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(dim, "hnsw", index, kids)


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")
