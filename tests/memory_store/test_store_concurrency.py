"""Thread safety: 8 threads add, search, retract, supersede and restore; index and SQLite must agree."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DIM, record, sqlite_rows, unit

from memory_store import EditRecord, InvalidTransitionError, MemoryStore

DURATION_S = 3.0
MAX_S = 30.0  # on a slow or busy machine the threads run on until they have done enough


class Shared:
    """What the worker threads learned, guarded by one lock: acknowledged edits and their keys."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, np.ndarray] = {}
        self.errors: list[BaseException] = []
        self.searches = 0
        self.retracts = 0  # successful ones: the final statuses may all be active again by chance

    def known(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(list(self.keys)) if self.keys else None


def _adder(store: MemoryStore, shared: Shared, seed: int, stop: threading.Event) -> None:
    rng = np.random.default_rng(seed)
    i = 0
    while not stop.is_set():
        if i % 3:
            keys = unit(rng, 2)
            rec = store.add(record(seed * 100_000 + i, "a" if i % 2 else "b"), keys)
            added = {rec.edit_id: keys}
        else:
            batch = unit(rng, 5)
            recs = store.add_many([record(seed * 100_000 + i * 10 + j) for j in range(5)], batch)
            added = {r.edit_id: batch[j : j + 1] for j, r in enumerate(recs)}
        with shared.lock:
            shared.keys.update(added)
        i += 1


def _searcher(store: MemoryStore, shared: Shared, seed: int, stop: threading.Event) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        queries = unit(rng, 3)
        for hits in store.search(queries, k=5, namespace=None if seed % 2 else ["a", "default"]):
            ids = [h.record.edit_id for h in hits]
            assert len(ids) == len(set(ids)) <= 5
            assert [h.rank for h in hits] == list(range(len(hits)))
            assert all(h.record.status == "active" for h in hits)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
        with shared.lock:
            shared.searches += 1


def _changer(store: MemoryStore, shared: Shared, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed)
    while not stop.is_set():
        edit_id = shared.known(rng)
        if edit_id is None:
            time.sleep(0.001)
            continue
        try:
            action = rng.random()
            if action < 0.5:
                store.retract(edit_id, reason="thread")
                with shared.lock:
                    shared.retracts += 1
            elif action < 0.8:
                store.restore(edit_id)
            else:
                keys = unit(vectors, 1)
                new = store.supersede(edit_id, EditRecord(prompt="Replaced?", target="new"), keys)
                with shared.lock:
                    shared.keys[new.edit_id] = keys
        except InvalidTransitionError:
            pass  # another thread changed this edit first: expected under contention


def _guard(fn: Callable[[MemoryStore, Shared, int, threading.Event], None]) -> Callable[..., None]:
    def run(store: MemoryStore, shared: Shared, seed: int, stop: threading.Event) -> None:
        try:
            fn(store, shared, seed, stop)
        except BaseException as exc:  # reported by the main thread
            with shared.lock:
                shared.errors.append(exc)
            stop.set()

    return run


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_eight_threads_leave_index_and_sqlite_in_agreement(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "memory"
    shared = Shared()
    stop = threading.Event()
    roles = [_adder] * 3 + [_searcher] * 3 + [_changer] * 2
    with MemoryStore.open(path, dim=DIM, create=True, index=kind) as store:  # type: ignore[arg-type]
        threads = [
            threading.Thread(target=_guard(role), args=(store, shared, seed, stop))
            for seed, role in enumerate(roles)
        ]
        for thread in threads:
            thread.start()
        time.sleep(DURATION_S)
        deadline = time.monotonic() + MAX_S
        while time.monotonic() < deadline and not shared.errors:
            with shared.lock:
                if len(shared.keys) >= 50 and shared.retracts > 0 and shared.searches > 0:
                    break
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not shared.errors, shared.errors
        assert shared.searches > 0
        store.verify()  # index rows == SQLite key rows, vectors equal, statuses and namespaces equal
        assert store.count(status=None) == len(shared.keys)
        statuses = {str(i): str(s) for i, s in sqlite_rows(path, "SELECT edit_id, status FROM records")}
        assert set(statuses) == set(shared.keys)
        assert {r.edit_id: r.status for r in store.list(status=None)} == statuses
        assert shared.retracts > 0
        assert "retracted" in statuses.values()  # with 50+ edits changed by two threads, some stay so
        active = [edit_id for edit_id, status in statuses.items() if status == "active"]
        for edit_id in random.Random(0).sample(active, min(200, len(active))):
            keys = shared.keys[edit_id]
            top = store.search(keys[0], k=1, namespace=None)[0][0]
            assert top.record.edit_id == edit_id or top.score >= float(keys[0] @ keys[0]) - 1e-5
    with MemoryStore.open(path, index=kind) as again:  # type: ignore[arg-type]
        again.verify()
        assert again.count(status=None) == len(shared.keys)
