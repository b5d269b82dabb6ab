"""MemoryStore operations: add, search, get, list, status changes, history, persistence and the manifest."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DIM, record, sqlite_rows, unit

from memory_store import EditRecord, MemoryStore


def test_create_writes_manifest_and_sqlite(store: MemoryStore, store_path: Path) -> None:
    manifest = json.loads((store_path / "manifest.json").read_text())
    assert manifest["dim"] == DIM
    assert manifest["encoder_id"] == "test-encoder"
    assert manifest["format_version"] == 1
    assert manifest["extra"] == {}
    assert store.manifest == manifest
    assert (store_path / "edits.sqlite").exists()
    assert sqlite_rows(store_path, "PRAGMA journal_mode") == [("wal",)]
    assert sqlite_rows(store_path, "SELECT version FROM schema_version") == [(1,)]
    assert store.dim == DIM
    assert store.encoder_id == "test-encoder"
    assert store.sentinel_dir == store_path / "sentinel"


def test_manifest_property_is_a_copy_and_update_merges(store: MemoryStore, store_path: Path) -> None:
    store.manifest["extra"]["x"] = 1
    assert store.manifest["extra"] == {}
    store.update_manifest({"model": "smollm2", "backend": {"name": "lte"}})
    store.update_manifest({"model": "gemma"})
    assert store.manifest["extra"] == {"model": "gemma", "backend": {"name": "lte"}}
    on_disk = json.loads((store_path / "manifest.json").read_text())
    assert on_disk["extra"] == {"model": "gemma", "backend": {"name": "lte"}}
    assert not [p for p in store_path.iterdir() if p.name.endswith(".tmp")]


def test_add_get_and_durable_row(store: MemoryStore, store_path: Path, rng: np.random.Generator) -> None:
    rec = EditRecord(prompt="Who leads Acme?", target="Jane", subject="Acme", meta={"by": "me"})
    returned = store.add(rec, unit(rng, 1)[0])
    assert returned == rec
    assert store.get(rec.edit_id) == rec
    # Durable at return: a separate connection sees the committed row.
    assert sqlite_rows(store_path, "SELECT edit_id, status FROM records") == [(rec.edit_id, "active")]
    assert store.count() == 1


def test_vectors_round_trip_exactly(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 3)
    rec = store.add(record(1), keys)
    np.testing.assert_array_equal(store.vectors(rec.edit_id), keys)
    one = store.add(record(2), keys[0].astype(np.float64))
    assert store.vectors(one.edit_id).shape == (1, DIM)
    assert store.vectors(one.edit_id).dtype == np.float32


def test_search_shapes_and_order(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 20)
    recs = store.add_many([record(i) for i in range(20)], keys)
    hits = store.search(keys[3])
    assert len(hits) == 1
    assert len(hits[0]) == 1
    assert hits[0][0].record.edit_id == recs[3].edit_id
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][0].rank == 0
    many = store.search(keys[:5], k=4)
    assert len(many) == 5
    for i, row in enumerate(many):
        assert row[0].record.edit_id == recs[i].edit_id
        assert [h.rank for h in row] == [0, 1, 2, 3]
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, np.sort(keys @ keys[i])[::-1][:4], rtol=1e-5)


def test_search_k_larger_than_store_returns_all(store: MemoryStore, rng: np.random.Generator) -> None:
    store.add_many([record(i) for i in range(3)], unit(rng, 3))
    assert len(store.search(unit(rng, 1), k=10)[0]) == 3


def test_search_empty_store(store: MemoryStore, rng: np.random.Generator) -> None:
    assert store.search(unit(rng, 4), k=3) == [[], [], [], []]
    assert store.search(np.zeros((0, DIM), np.float32)) == []


def test_multi_key_edit_is_one_hit_with_max_score(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 3)
    multi = store.add(record(0), keys)
    other = store.add(record(1), unit(rng, 1))
    query = keys[1]
    hits = store.search(query, k=5)[0]
    assert [h.record.edit_id for h in hits] == [multi.edit_id, other.edit_id]
    assert hits[0].score == pytest.approx(float(np.max(keys @ query)), abs=1e-6)


def test_namespaces_filter_search(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 3)
    a = store.add(record(0, "alpha"), keys[0])
    b = store.add(record(1, "beta"), keys[1])
    d = store.add(record(2), keys[2])
    assert [h.record.edit_id for h in store.search(keys[0], k=3)[0]] == [d.edit_id]
    assert {h.record.edit_id for h in store.search(keys[0], k=3, namespace="alpha")[0]} == {a.edit_id}
    both = store.search(keys[0], k=3, namespace=["alpha", "beta"])[0]
    assert {h.record.edit_id for h in both} == {a.edit_id, b.edit_id}
    assert len(store.search(keys[0], k=3, namespace=None)[0]) == 3
    assert store.search(keys[0], k=3, namespace="nowhere") == [[]]
    assert store.namespaces() == ["alpha", "beta", "default"]
    assert store.count("alpha") == 1
    assert store.count(None) == 3


def test_search_still_returns_k_when_nearer_records_are_filtered(
    store: MemoryStore, rng: np.random.Generator
) -> None:
    query = unit(rng, 1)[0]
    # 300 records almost identical to the query, all retracted or in another namespace ...
    near = unit(rng, 300) * 0.05 + query
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    near_recs = store.add_many([record(i, "default" if i % 2 else "other") for i in range(300)], near)
    for rec in near_recs[1::2]:
        store.retract(rec.edit_id)
    # ... and 300 far ones that qualify: half the rows qualify, so the first fetch is small and finds
    # none of them; only fetching more (doubling) reaches them.
    far = unit(rng, 300) * 0.2 - query
    far_recs = store.add_many([record(1000 + i) for i in range(300)], far)
    hits = store.search(query, k=5)[0]
    assert len(hits) == 5
    expected = sorted(far_recs, key=lambda r: -float(store.vectors(r.edit_id)[0] @ query))[:5]
    assert [h.record.edit_id for h in hits] == [r.edit_id for r in expected]


def test_list_and_count_filters(store: MemoryStore, rng: np.random.Generator) -> None:
    base = time.time()
    recs = [
        dataclasses.replace(record(i, "ns" if i < 2 else "default"), created_at=base - i) for i in range(4)
    ]
    store.add_many(recs, unit(rng, 4))
    store.retract(recs[3].edit_id)
    assert [r.edit_id for r in store.list()] == [recs[2].edit_id, recs[1].edit_id, recs[0].edit_id]
    assert [r.edit_id for r in store.list("default")] == [recs[2].edit_id]
    assert [r.edit_id for r in store.list(status=None)] == [r.edit_id for r in reversed(recs)]
    assert [r.status for r in store.list(status="retracted")] == ["retracted"]
    assert [r.edit_id for r in store.list("ns")] == [recs[1].edit_id, recs[0].edit_id]
    assert store.count() == 3
    assert store.count("default") == 1
    assert store.count(status=None) == 4
    assert store.count("ns", "active") == 2
    assert store.count(status="retracted") == 1


def test_retract_hides_and_restore_returns(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 2)
    first, second = store.add_many([record(0), record(1)], keys)
    retracted = store.retract(first.edit_id, reason="wrong fact")
    assert retracted.status == "retracted"
    assert store.get(first.edit_id).status == "retracted"
    assert [h.record.edit_id for h in store.search(keys[0], k=2)[0]] == [second.edit_id]
    restored = store.restore(first.edit_id, reason="it was right")
    assert restored.status == "active"
    assert store.search(keys[0], k=1)[0][0].record.edit_id == first.edit_id
    kinds = [(e.kind, e.reason) for e in store.history(first.edit_id)]
    assert kinds == [("add", ""), ("retract", "wrong fact"), ("restore", "it was right")]
    times = [e.at for e in store.history(first.edit_id)]
    assert times == sorted(times)


def test_supersede_is_one_step_with_history_on_both(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 2)
    old = store.add(record(0), keys[0])
    new = store.supersede(
        old.edit_id, EditRecord(prompt="Who is person 0?", target="Someone else"), keys[1], "moved"
    )
    assert new.supersedes == old.edit_id
    assert new.status == "active"
    assert store.get(old.edit_id).status == "superseded"
    assert store.get(new.edit_id) == new
    assert store.search(keys[0], k=2)[0][0].record.edit_id == new.edit_id
    assert len(store.search(keys[0], k=2)[0]) == 1
    old_events = [(e.kind, e.reason, e.other_id) for e in store.history(old.edit_id)]
    assert old_events == [("add", "", None), ("supersede", "moved", new.edit_id)]
    assert [(e.kind, e.other_id) for e in store.history(new.edit_id)] == [("add", old.edit_id)]
    # A superseded edit can be retracted for good, or restored.
    assert store.retract(old.edit_id).status == "retracted"
    assert store.restore(old.edit_id).status == "active"


def test_search_hits_carry_current_status(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 1)
    rec = store.add(record(0), keys[0])
    store.retract(rec.edit_id)
    store.restore(rec.edit_id)
    assert store.search(keys[0])[0][0].record.status == "active"


def test_add_many_shapes(store: MemoryStore, rng: np.random.Generator) -> None:
    three = store.add_many([record(i) for i in range(2)], unit(rng, 6).reshape(2, 3, DIM))
    assert [store.vectors(r.edit_id).shape for r in three] == [(3, DIM), (3, DIM)]
    ragged = store.add_many([record(5), record(6)], [unit(rng, 1)[0], unit(rng, 4)])
    assert [store.vectors(r.edit_id).shape for r in ragged] == [(1, DIM), (4, DIM)]
    assert store.add_many([], np.zeros((0, DIM), np.float32)) == []
    assert store.count() == 4


def test_reopen_keeps_everything(store_path: Path, rng: np.random.Generator) -> None:
    keys = unit(rng, 30)
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        recs = store.add_many([record(i, "a" if i % 3 else "b") for i in range(30)], keys)
        store.retract(recs[4].edit_id)
        before = store.search(keys, k=3, namespace=None)
        history = store.history(recs[4].edit_id)
    with MemoryStore.open(store_path) as again:
        assert again.search(keys, k=3, namespace=None) == before
        assert again.history(recs[4].edit_id) == history
        assert again.count(None, None) == 30
        again.verify()


def test_context_manager_and_close_are_idempotent(store_path: Path) -> None:
    store = MemoryStore.open(store_path, dim=DIM, create=True)
    with store:
        pass
    store.close()
    assert "closed" in repr(store)
    with MemoryStore.open(store_path) as again:  # the lock was released
        assert again.count() == 0
