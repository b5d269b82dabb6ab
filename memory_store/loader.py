"""Rebuilds the in-memory index and catalog from edits.sqlite on open, reusing a still-valid HNSW cache."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from memory_store.catalog import Catalog
from memory_store.errors import CorruptStoreError
from memory_store.index import IndexKind, VectorIndex
from memory_store.sqlite import EditDatabase

__all__ = ["INDEX_CACHE_NAME", "LoadedState", "load_state", "verify_state"]

log = logging.getLogger(__name__)

INDEX_CACHE_NAME = "index.faiss"
_SPOT_CHECKS = 8


class LoadedState:
    """What open() builds: the index, the catalog, and how many index rows the cache file already covers."""

    def __init__(self, index: VectorIndex, catalog: Catalog, cached_rows: int) -> None:
        self.index = index
        self.catalog = catalog
        self.cached_rows = cached_rows


def _cache_matches(cache: VectorIndex, db: EditDatabase, all_kids: np.ndarray) -> str | None:
    """Why the cache cannot be used, or None. SQLite only ever appends keys, so a valid cache covers a
    prefix of SQLite's kids; a few vectors are compared byte for byte to catch a file from another memory."""
    cached = cache.kids
    if len(cached) > len(all_kids) or not np.array_equal(cached, all_kids[: len(cached)]):
        return (
            f"it covers {len(cached)} keys that are not the first {len(cached)} of SQLite's {len(all_kids)}"
        )
    if not len(cached):
        return None
    rng = np.random.default_rng()
    sample = np.unique(np.concatenate([cached[[0, -1]], rng.choice(cached, min(_SPOT_CHECKS, len(cached)))]))
    stored = db.vectors_by_kid(sample.tolist(), cache.dim)
    for kid in sample.tolist():
        if kid not in stored or not np.array_equal(cache.reconstruct(kid), stored[kid]):
            return f"its vector for key {kid} differs from SQLite's"
    return None


def verify_state(db: EditDatabase, index: VectorIndex, catalog: Catalog) -> list[str]:
    """Every disagreement between SQLite and the in-memory index and catalog (empty when they agree).

    Reads every key vector, so it costs about as much as an open; meant for tests and checks, not hot paths.
    """
    problems: list[str] = []
    rows = db.key_rows(index.dim)
    if not np.array_equal(rows.kids, index.kids):
        problems.append(f"key ids differ: SQLite has {len(rows.kids)}, the index {index.ntotal}")
    else:
        if not np.array_equal(rows.matrix(), index.storage()):
            problems.append("an indexed vector differs from its SQLite blob")
        if not np.array_equal(rows.rids, catalog.rids(rows.kids)):
            problems.append("a key maps to another record than in SQLite")
    groups = db.record_groups()
    counts = np.bincount(rows.rids, minlength=max([int(g[2].max()) + 1 for g in groups if len(g[2])] or [1]))
    active: dict[str, int] = {}
    for namespace, status, rids in groups:
        got_statuses, got_namespaces = catalog.states(rids)
        if set(got_statuses) - {status} or set(got_namespaces) - {namespace}:
            problems.append(f"a record's status or namespace differs from SQLite ({namespace!r}, {status!r})")
        if status == "active":
            active[namespace] = active.get(namespace, 0) + int(counts[rids].sum())
    if sum(len(g[2]) for g in groups) != catalog.num_records:
        problems.append("the number of records differs from SQLite")
    if {ns: n for ns, n in catalog.active_keys_by_namespace().items() if n} != active:
        problems.append("per-namespace active key counts differ from SQLite")
    return problems


def load_state(db: EditDatabase, dim: int, kind: IndexKind, cache_path: Path) -> LoadedState:
    """Index every key row of `db` in an index of `kind`, then check index and records agree."""
    started = time.perf_counter()
    catalog = Catalog()
    groups = db.record_groups()
    index: VectorIndex | None = None
    cached_rows = 0
    if kind == "hnsw":
        pairs = db.key_rows(dim, with_vectors=False)
        cache = VectorIndex.load(cache_path, dim)
        reason = None if cache is None else _cache_matches(cache, db, pairs.kids)
        if cache is not None and reason is None:
            index = cache
            cached_rows = cache.ntotal
            newer = db.key_rows(dim, after_kid=int(cache.kids[-1]) if cache.ntotal else 0)
            index.add(newer.kids, newer.matrix())
            log.info(
                "index cache covered %d of %d keys; added %d", cached_rows, index.ntotal, len(newer.kids)
            )
        elif cache is not None:
            log.warning("rebuilding the HNSW index: the cache %s is stale (%s)", cache_path, reason)
        elif len(pairs.kids):
            log.warning(
                "building an HNSW index over %d keys (no cache file); this can take minutes", len(pairs.kids)
            )
        key_kids, key_rids = pairs.kids, pairs.rids
    if index is None:
        rows = db.key_rows(dim)
        index = VectorIndex(dim, kind)
        index.add(rows.kids, rows.matrix())
        key_kids, key_rids = rows.kids, rows.rids
    catalog.add(groups, key_kids, key_rids)
    problem = catalog.check(index.kids)
    if problem is not None:
        raise CorruptStoreError(f"{str(db.path)!r}: index and records disagree after loading: {problem}")
    log.info(
        "loaded %d keys of %d records in %.2fs",
        index.ntotal,
        catalog.num_records,
        time.perf_counter() - started,
    )
    return LoadedState(index, catalog, cached_rows)
