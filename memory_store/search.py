"""Filtered top-k search: over-fetch index rows, keep active edits of the namespaces, one hit per edit."""

from __future__ import annotations

import math

import numpy as np

from memory_store.catalog import Catalog
from memory_store.index import VectorIndex

__all__ = ["EXACT_FALLBACK_ROWS", "FETCH_SLACK", "MIN_FETCH", "filtered_search"]

# Beyond this many rows per query an approximate index is asked for too much at once (HNSW would need
# efSearch this large); an exact scan over the qualifying rows is then both faster and exact.
EXACT_FALLBACK_ROWS = 4096
# The first fetch is FETCH_SLACK times the rows expected to hold k qualifying edits, at least MIN_FETCH.
MIN_FETCH = 16
FETCH_SLACK = 2.0
_EXACT_CHUNK = 65_536
_QUERY_CHUNK = 16

Hits = list[tuple[int, float]]  # (rid, score), best first, one entry per record


def _distinct(rids: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The first `k` distinct rids in this best-first list; the first occurrence carries the max score."""
    hits: Hits = []
    seen: set[int] = set()
    for rid, score in zip(rids.tolist(), scores.tolist(), strict=True):
        if rid not in seen:
            seen.add(rid)
            hits.append((rid, score))
            if len(hits) == k:
                break
    return hits


def _exact(
    index: VectorIndex, catalog: Catalog, queries: np.ndarray, k: int, codes: np.ndarray | None
) -> list[Hits]:
    """Brute-force inner products over every qualifying row (the exhaustive end of over-fetching)."""
    kids = index.kids
    rids = catalog.rids(kids)
    positions = np.flatnonzero(catalog.qualify(rids, codes))
    if not len(positions):
        return [[] for _ in queries]
    storage = index.storage()
    row_rids = rids[positions]
    out: list[Hits] = []
    for q0 in range(0, len(queries), _QUERY_CHUNK):
        block = queries[q0 : q0 + _QUERY_CHUNK]
        scores = np.empty((len(block), len(positions)), np.float32)
        for c0 in range(0, len(positions), _EXACT_CHUNK):
            scores[:, c0 : c0 + _EXACT_CHUNK] = block @ storage[positions[c0 : c0 + _EXACT_CHUNK]].T
        for row in scores:
            # Grow the candidate set until it holds k distinct records (or every row).
            take = min(len(row), 4 * k)
            while True:
                top = np.argpartition(-row, take - 1)[:take] if take < len(row) else np.arange(len(row))
                top = top[np.argsort(-row[top], kind="stable")]
                hits = _distinct(row_rids[top], row[top], k)
                if len(hits) >= k or take == len(row):
                    break
                take = min(len(row), 4 * take)
            out.append(hits)
    return out


def filtered_search(
    index: VectorIndex, catalog: Catalog, queries: np.ndarray, k: int, codes: np.ndarray | None
) -> list[Hits]:
    """Top-k distinct active records per query among namespaces `codes` (None = all), best first.

    Rows of inactive or out-of-namespace records are dropped after the index search, so the fetch size
    starts from the share of qualifying rows and doubles until k records qualify; past
    EXACT_FALLBACK_ROWS the remaining queries get an exact scan, so k hits come back whenever k exist.
    """
    qualifying = catalog.active_keys(codes)
    if not qualifying or not index.ntotal:
        return [[] for _ in queries]
    ntotal = index.ntotal
    # Expect about k * (keys per record) qualifying rows in a top list diluted by ntotal / qualifying.
    keys_per_record = max(1.0, catalog.num_keys / max(1, catalog.num_records))
    fetch = min(ntotal, max(MIN_FETCH, math.ceil(FETCH_SLACK * k * keys_per_record * ntotal / qualifying)))
    results: list[Hits | None] = [None] * len(queries)
    pending = np.arange(len(queries))
    while len(pending):
        if fetch > EXACT_FALLBACK_ROWS or (fetch >= ntotal and index.kind == "hnsw"):
            for i, hits in zip(pending, _exact(index, catalog, queries[pending], k, codes), strict=True):
                results[i] = hits
            break
        scores, kids = index.search(queries[pending], fetch)
        still: list[int] = []
        for row, i in enumerate(pending):
            found = kids[row] >= 0
            row_kids, row_scores = kids[row][found], scores[row][found]
            row_rids = catalog.rids(row_kids)
            keep = catalog.qualify(row_rids, codes)
            hits = _distinct(row_rids[keep], row_scores[keep], k)
            # A flat index returns every row once fetch reaches ntotal, so fewer hits means fewer exist.
            if len(hits) >= k or fetch >= ntotal:
                results[i] = hits
            else:
                still.append(int(i))
        pending = np.array(still, dtype=np.int64)
        fetch = min(ntotal, 2 * fetch)
    return [hits if hits is not None else [] for hits in results]
