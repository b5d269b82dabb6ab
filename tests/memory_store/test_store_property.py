"""Property test: search equals a brute-force numpy model over random add/retract/supersede/reopen runs."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import memory_store.search as search_module
from memory_store import EditRecord, InvalidTransitionError, MemoryStore

DIM = 8
NAMESPACES = ("default", "a", "b")
# Scores are float32 inner products of unit vectors: faiss and numpy may differ in the last bits.
SCORE_TOL = 1e-5


@dataclass
class ModelEdit:
    namespace: str
    keys: np.ndarray
    status: str = "active"
    events: list[str] = field(default_factory=lambda: ["add"])


def _keys(seed: int, count: int) -> np.ndarray:
    keys = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    out: np.ndarray = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    # A coarse grid makes exact ties between different edits common, which the comparison must handle.
    return np.round(out * 4) / 4  # a unit vector in 8-d has a component >= 0.35, so no row rounds to 0


class StoreModel(RuleBasedStateMachine):
    """The real store and a dict of ModelEdit side by side; every search is compared with brute force."""

    index_kind = "flat"
    minimal_fetch = False

    def __init__(self) -> None:
        super().__init__()
        self.saved = (search_module.MIN_FETCH, search_module.FETCH_SLACK)
        if self.minimal_fetch:  # start every search from one row, so over-fetching has to do all the work
            search_module.MIN_FETCH, search_module.FETCH_SLACK = 1, 0.0
        self.tmp = Path(tempfile.mkdtemp(prefix="memory_store-property-"))
        self.store = self._open(create=True)
        self.model: dict[str, ModelEdit] = {}
        self.counter = 0

    def _open(self, *, create: bool) -> MemoryStore:
        store = MemoryStore.open(self.tmp / "m", dim=DIM, create=create, index=self.index_kind)  # type: ignore[arg-type]
        # HNSW is approximate; on these few hundred keys a large efSearch makes it exhaustive, so the
        # model checks filtering and over-fetching under HNSW, not the graph's recall.
        store._index.ef_search = 1024
        return store

    def teardown(self) -> None:
        search_module.MIN_FETCH, search_module.FETCH_SLACK = self.saved
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _pick(self, index: int) -> str:
        ids = sorted(self.model)
        return ids[index % len(ids)]

    @rule(seed=st.integers(0, 10_000), num_keys=st.integers(1, 3), namespace=st.sampled_from(NAMESPACES))
    def add(self, seed: int, num_keys: int, namespace: str) -> None:
        keys = _keys(seed, num_keys)
        rec = self.store.add(EditRecord(prompt=f"q{self.counter}?", target="t", namespace=namespace), keys)
        self.counter += 1
        self.model[rec.edit_id] = ModelEdit(namespace, keys)

    @rule(seed=st.integers(0, 10_000), count=st.integers(1, 6), namespace=st.sampled_from(NAMESPACES))
    def add_many(self, seed: int, count: int, namespace: str) -> None:
        keys = _keys(seed, count)
        recs = [
            EditRecord(prompt=f"b{self.counter}-{i}?", target="t", namespace=namespace) for i in range(count)
        ]
        self.counter += 1
        for rec, key in zip(self.store.add_many(recs, keys), keys, strict=True):
            self.model[rec.edit_id] = ModelEdit(namespace, key[None])

    @precondition(lambda self: bool(self.model))
    @rule(index=st.integers(0, 1000), action=st.sampled_from(["retract", "restore"]))
    def change(self, index: int, action: str) -> None:
        edit_id = self._pick(index)
        edit = self.model[edit_id]
        allowed = edit.status != "retracted" if action == "retract" else edit.status != "active"
        try:
            getattr(self.store, action)(edit_id)
        except InvalidTransitionError:
            assert not allowed
            return
        assert allowed
        edit.status = "retracted" if action == "retract" else "active"
        edit.events.append(action)

    @precondition(lambda self: bool(self.model))
    @rule(index=st.integers(0, 1000), seed=st.integers(0, 10_000), namespace=st.sampled_from(NAMESPACES))
    def supersede(self, index: int, seed: int, namespace: str) -> None:
        old_id = self._pick(index)
        old = self.model[old_id]
        keys = _keys(seed, 1)
        try:
            new = self.store.supersede(
                old_id, EditRecord(prompt="new?", target="t", namespace=namespace), keys
            )
        except InvalidTransitionError:
            assert old.status != "active"
            return
        assert old.status == "active"
        old.status = "superseded"
        old.events.append("supersede")
        self.model[new.edit_id] = ModelEdit(namespace, keys)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open(create=False)

    @rule(
        seed=st.integers(0, 10_000),
        k=st.integers(1, 6),
        namespaces=st.one_of(
            st.none(), st.sampled_from(NAMESPACES), st.lists(st.sampled_from(NAMESPACES), min_size=1)
        ),
    )
    def search(self, seed: int, k: int, namespaces: str | list[str] | None) -> None:
        query = _keys(seed, 1)[0]
        hits = self.store.search(query, k=k, namespace=namespaces)[0]
        wanted = (
            set(NAMESPACES)
            if namespaces is None
            else {namespaces}
            if isinstance(namespaces, str)
            else set(namespaces)
        )
        best = {
            edit_id: float(np.max(edit.keys @ query))
            for edit_id, edit in self.model.items()
            if edit.status == "active" and edit.namespace in wanted
        }
        expected = sorted(best.values(), reverse=True)[:k]
        assert len(hits) == len(expected)
        np.testing.assert_allclose([h.score for h in hits], expected, atol=SCORE_TOL)
        ids = [h.record.edit_id for h in hits]
        assert len(set(ids)) == len(ids)
        for h in hits:  # each hit is a qualifying edit whose own best score is the one reported
            assert h.record.edit_id in best
            assert abs(best[h.record.edit_id] - h.score) <= SCORE_TOL
            assert h.record.status == "active"
        if len(expected) == k and len(best) > k:  # nothing left out that strictly beats the k-th hit
            cutoff = expected[-1]
            assert {i for i, s in best.items() if s > cutoff + SCORE_TOL} <= set(ids)

    @invariant()
    def counts_and_history_match(self) -> None:
        statuses = [e.status for e in self.model.values()]
        assert self.store.count(status=None) == len(statuses)
        assert self.store.count() == statuses.count("active")
        if self.model:
            edit_id = sorted(self.model)[0]
            assert [e.kind for e in self.store.history(edit_id)] == self.model[edit_id].events
            assert self.store.get(edit_id).status == self.model[edit_id].status


class MinimalFetchStoreModel(StoreModel):
    minimal_fetch = True


class HnswStoreModel(StoreModel):
    index_kind = "hnsw"
    minimal_fetch = True


SETTINGS = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestFlatStoreMatchesModel = StoreModel.TestCase
TestFlatStoreMatchesModel.settings = SETTINGS
TestMinimalFetchStoreMatchesModel = MinimalFetchStoreModel.TestCase
TestMinimalFetchStoreMatchesModel.settings = SETTINGS
TestHnswStoreMatchesModel = HnswStoreModel.TestCase
TestHnswStoreMatchesModel.settings = SETTINGS
