"""The faiss side: HNSW and flat agree with brute force, the auto switch, the index.faiss cache, fallbacks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DIM, record, unit

import memory_store.search
from memory_store import MemoryStore


def brute_force_top(keys: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-(keys @ query), kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_kinds_match_brute_force(tmp_path: Path, rng: np.random.Generator, kind: str) -> None:
    keys = unit(rng, 400)
    queries = unit(rng, 50)
    with MemoryStore.open(tmp_path / "m", dim=DIM, create=True, index=kind) as store:  # type: ignore[arg-type]
        assert store.index_kind == kind
        recs = store.add_many([record(i) for i in range(400)], keys)
        results = store.search(queries, k=5)
        for query, hits in zip(queries, results, strict=True):
            assert [h.record.edit_id for h in hits] == [
                recs[i].edit_id for i in brute_force_top(keys, query, 5)
            ]
        store.verify()


def test_auto_switches_to_hnsw_and_keeps_results(tmp_path: Path, rng: np.random.Generator) -> None:
    keys = unit(rng, 300)
    with MemoryStore.open(tmp_path / "m", dim=DIM, create=True, hnsw_min_rows=200) as store:
        recs = store.add_many([record(i) for i in range(150)], keys[:150])
        assert store.index_kind == "flat"
        store.retract(recs[0].edit_id)
        for i in range(150, 300):  # crosses the threshold on a single add
            recs.append(store.add(record(i), keys[i]))
        assert store.index_kind == "hnsw"
        store.verify()
        assert store.search(keys[0], k=1)[0][0].record.edit_id != recs[0].edit_id
        assert store.search(keys[299], k=1)[0][0].record.edit_id == recs[299].edit_id
    with MemoryStore.open(tmp_path / "m", hnsw_min_rows=200) as again:
        assert again.index_kind == "hnsw"
    with MemoryStore.open(tmp_path / "m", hnsw_min_rows=1000) as small:
        assert small.index_kind == "flat"


def test_hnsw_cache_is_written_on_close_and_reused(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m"
    keys = unit(rng, 200)
    with MemoryStore.open(path, dim=DIM, create=True, index="hnsw") as store:
        store.add_many([record(i) for i in range(200)], keys)
        before = store.search(keys[:20], k=3)
    assert (path / "index.faiss").exists()
    caplog.set_level(logging.INFO, logger="memory_store")
    with MemoryStore.open(path, index="hnsw") as again:
        assert again.search(keys[:20], k=3) == before
        again.verify()
    assert "index cache covered 200 of 200 keys; added 0" in caplog.text


def test_stale_cache_is_topped_up(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m"
    keys = unit(rng, 150)
    with MemoryStore.open(path, dim=DIM, create=True, index="hnsw") as store:
        store.add_many([record(i) for i in range(100)], keys[:100])
    for name in ("index.faiss", "index.faiss.sha256.json"):
        shutil.copy(path / name, tmp_path / name)
    with MemoryStore.open(path, index="hnsw") as store:
        recs = store.add_many([record(i) for i in range(100, 150)], keys[100:])
    # As if the process had died before close() rewrote the cache: it covers only the first 100 keys.
    for name in ("index.faiss", "index.faiss.sha256.json"):
        shutil.copy(tmp_path / name, path / name)
    caplog.set_level(logging.INFO, logger="memory_store")
    with MemoryStore.open(path, index="hnsw") as store:
        store.verify()
        assert store.search(keys[149], k=1)[0][0].record.edit_id == recs[-1].edit_id
    assert "index cache covered 100 of 150 keys; added 50" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "other memory", "two altered vectors", "no digest"])
def test_unusable_cache_is_rebuilt(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path = tmp_path / "m"
    keys = unit(rng, 100)
    with MemoryStore.open(path, dim=DIM, create=True, index="hnsw") as store:
        recs = store.add_many([record(i) for i in range(100)], keys)
    cache = path / "index.faiss"
    if damage == "garbage":
        cache.write_bytes(b"not a faiss index" * 10)
    elif damage == "two altered vectors":  # same length, readable: only the recorded sha256 can tell
        data = bytearray(cache.read_bytes())
        for row in (3, 60):
            at = bytes(data).find(np.asarray(keys[row], dtype=np.float32).tobytes())
            assert at > 0
            data[at : at + 8] = np.asarray([0.5, -0.5], dtype=np.float32).tobytes()
        cache.write_bytes(bytes(data))
    elif damage == "no digest":  # a cache from before digests, or torn between its two writes
        (path / "index.faiss.sha256.json").unlink()
    else:  # same dim and row count, other vectors, its own valid digest: only the spot checks can tell
        with MemoryStore.open(tmp_path / "other", dim=DIM, create=True, index="hnsw") as other:
            other.add_many([record(i) for i in range(100)], unit(np.random.default_rng(99), 100))
        for name in ("index.faiss", "index.faiss.sha256.json"):
            shutil.copy(tmp_path / "other" / name, path / name)
    caplog.set_level(logging.INFO, logger="memory_store")
    with MemoryStore.open(path, index="hnsw") as store:
        store.verify()
        assert store.search(keys[7], k=1)[0][0].record.edit_id == recs[7].edit_id
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cache" in message for message in warnings)
    assert "covered" not in caplog.text


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_sparse_namespace_goes_to_exact_scan(tmp_path: Path, rng: np.random.Generator, kind: str) -> None:
    keys = unit(rng, 3000)
    with MemoryStore.open(tmp_path / "m", dim=DIM, create=True, index=kind) as store:  # type: ignore[arg-type]
        recs = store.add_many([record(i, "rare" if i % 1000 == 0 else "bulk") for i in range(3000)], keys)
        query = unit(rng, 1)[0]
        hits = store.search(query, k=5, namespace="rare")[0]
        rare = [i for i in range(3000) if i % 1000 == 0]
        expected = sorted(rare, key=lambda i: -float(keys[i] @ query))
        assert [h.record.edit_id for h in hits] == [recs[i].edit_id for i in expected]
        np.testing.assert_allclose([h.score for h in hits], [keys[i] @ query for i in expected], rtol=1e-5)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exact_fallback_dedupes_multi_key_edits(
    tmp_path: Path, rng: np.random.Generator, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_store.search, "EXACT_FALLBACK_ROWS", 8)  # force the exhaustive path early
    keys = unit(rng, 240).reshape(60, 4, DIM)
    with MemoryStore.open(tmp_path / "m", dim=DIM, create=True, index=kind) as store:  # type: ignore[arg-type]
        recs = store.add_many([record(i, "a" if i % 3 else "b") for i in range(60)], keys)
        for rec in recs[1:30:2]:
            store.retract(rec.edit_id)
        queries = unit(rng, 10)
        for query, hits in zip(queries, store.search(queries, k=7, namespace="a"), strict=True):
            active = [i for i in range(60) if i % 3 and not (1 <= i < 30 and i % 2 == 1)]
            best = {i: float(np.max(keys[i] @ query)) for i in active}
            expected = sorted(best, key=lambda i: -best[i])[:7]
            assert [h.record.edit_id for h in hits] == [recs[i].edit_id for i in expected]
            np.testing.assert_allclose([h.score for h in hits], [best[i] for i in expected], rtol=1e-5)
