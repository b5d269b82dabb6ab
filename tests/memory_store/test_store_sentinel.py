"""FixedSentinel calibration (targets, ties, float edge cases), LearnedSentinel and saving beside a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import DIM, record, unit

from memory_store import (
    DimensionMismatchError,
    EditRecord,
    FixedSentinel,
    IncompatibleArtifactError,
    InvalidVectorError,
    LearnedSentinel,
    MemoryNotFoundError,
    MemoryStore,
    SearchHit,
    Sentinel,
    StoreError,
    load_sentinel,
)
from memory_store.errors import CorruptStoreError, InvalidArgumentError


def hit(score: float, rank: int = 0) -> SearchHit:
    return SearchHit(EditRecord(prompt="Q?", target="A"), score, rank)


def test_fixed_admits_strictly_above_threshold() -> None:
    sentinel = FixedSentinel(0.5)
    hits = [hit(0.9, 0), hit(0.5, 1), hit(0.4999, 2)]
    assert [h.score for h in sentinel.admit(np.zeros(DIM, np.float32), hits)] == [0.9]
    assert sentinel.threshold(np.zeros(DIM, np.float32)) == 0.5
    assert sentinel.name == "fixed"


def test_calibrate_meets_target_with_the_smallest_threshold() -> None:
    rng = np.random.default_rng(0)
    inside = rng.normal(0.8, 0.05, 500)
    outside = rng.normal(0.3, 0.1, 1000)
    sentinel = FixedSentinel.calibrate(inside, outside, target_false_accept=0.01)
    false_accept, false_reject = FixedSentinel.rates(sentinel.value, inside, outside)
    assert false_accept <= 0.01
    assert false_accept == sentinel.calibration["false_accept"]
    assert false_reject == sentinel.calibration["false_reject"]
    # Exactly 10 out-of-scope scores may pass; the 11th largest is the cut-off.
    assert sentinel.value == np.sort(outside)[::-1][10]
    lower = np.nextafter(sentinel.value, -np.inf)
    assert FixedSentinel.rates(lower, inside, outside)[0] > 0.01


def test_calibrate_ties_are_rejected_together() -> None:
    outside = [0.5] * 10 + [0.1] * 90
    sentinel = FixedSentinel.calibrate([0.9], outside, target_false_accept=0.05)
    assert sentinel.value == 0.5  # accepting any 0.5 would accept all ten (10% > 5%)
    assert FixedSentinel.rates(sentinel.value, [0.9], outside) == (0.0, 0.0)
    loose = FixedSentinel.calibrate([0.9], outside, target_false_accept=0.10)
    assert loose.value == 0.1
    assert FixedSentinel.rates(loose.value, [0.9], outside)[0] == pytest.approx(0.10)


def test_calibrate_handles_float_rounding_of_the_target() -> None:
    outside = np.arange(100, dtype=np.float64)
    # 0.29 * 100 == 28.999999999999996 in floating point; 29 accepted scores are still allowed.
    sentinel = FixedSentinel.calibrate([200.0], outside, target_false_accept=0.29)
    assert FixedSentinel.rates(sentinel.value, [200.0], outside)[0] == pytest.approx(0.29)
    assert sentinel.value == 70.0


def test_calibrate_zero_target_is_the_maximum() -> None:
    sentinel = FixedSentinel.calibrate([1.0, 2.0], [0.1, 0.7, 0.3], target_false_accept=0.0)
    assert sentinel.value == 0.7
    assert sentinel.calibration["false_reject"] == 0.0


@pytest.mark.parametrize(
    ("inside", "outside", "target", "message"),
    [
        ([], [0.1], 0.01, "in_scope_scores expected at least one score"),
        ([0.9], [], 0.01, "out_of_scope_scores expected at least one score"),
        ([0.9], [np.nan], 0.01, "expected finite scores"),
        ([np.inf], [0.1], 0.01, "expected finite scores"),
        ([0.9], [0.1], 1.0, r"target_false_accept expected a float in \[0, 1\)"),
        ([0.9], [0.1], -0.1, "target_false_accept"),
    ],
)
def test_calibrate_rejects_bad_input(
    inside: list[float], outside: list[float], target: float, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        FixedSentinel.calibrate(inside, outside, target)


@given(
    outside=st.lists(st.integers(-5, 5).map(lambda v: v / 4), min_size=1, max_size=60),
    target=st.floats(0.0, 0.99),
)
@settings(max_examples=200, deadline=None)
def test_calibrate_property(outside: list[float], target: float) -> None:
    sentinel = FixedSentinel.calibrate([10.0], outside, target)
    assert FixedSentinel.rates(sentinel.value, [10.0], outside)[0] <= target + 1e-12
    # No smaller candidate cut-off (any out-of-scope value below it) also meets the target.
    for candidate in {v for v in outside if v < sentinel.value}:
        assert FixedSentinel.rates(candidate, [10.0], outside)[0] > target


def test_fixed_rejects_bad_threshold() -> None:
    with pytest.raises(InvalidArgumentError, match="threshold expected a finite float"):
        FixedSentinel(float("nan"))


def test_learned_threshold_is_per_query() -> None:
    vector = np.array([1.0, 0.0, 0.0], np.float32)
    sentinel = LearnedSentinel(vector)
    assert sentinel.threshold(np.array([0.5, 1.0, 0.0], np.float32)) == pytest.approx(0.5)
    assert sentinel.threshold(np.array([0.2, 1.0, 0.0], np.float32)) == pytest.approx(0.2)
    hits = [hit(0.6), hit(0.3)]
    assert [h.score for h in sentinel.admit(np.array([0.5, 1.0, 0.0], np.float32), hits)] == [0.6]
    assert [h.score for h in sentinel.admit(np.array([0.2, 1.0, 0.0], np.float32), hits)] == [0.6, 0.3]


def test_a_learned_margin_raises_every_threshold_and_survives_save(tmp_path: Path) -> None:
    query = np.array([0.5, 1.0, 0.0], np.float32)
    sentinel = LearnedSentinel(np.array([1.0, 0.0, 0.0], np.float32), margin=0.2)
    assert sentinel.threshold(query) == pytest.approx(0.7)
    assert [h.score for h in sentinel.admit(query, [hit(0.8), hit(0.6)])] == [0.8]  # 0.6 beat 0.5 only
    sentinel.save(tmp_path)
    loaded = load_sentinel(tmp_path)
    assert isinstance(loaded, LearnedSentinel)
    assert loaded.margin == pytest.approx(0.2)
    assert loaded.threshold(query) == pytest.approx(0.7)
    saved = json.loads((tmp_path / "sentinel.json").read_text())
    del saved["margin"]  # a sentinel saved before margins existed
    (tmp_path / "sentinel.json").write_text(json.dumps(saved))
    assert LearnedSentinel.load(tmp_path).threshold(query) == pytest.approx(0.5)
    saved["margin"] = "wide"
    (tmp_path / "sentinel.json").write_text(json.dumps(saved))
    with pytest.raises(CorruptStoreError, match="margin expected a number"):
        load_sentinel(tmp_path)
    with pytest.raises(InvalidArgumentError, match="margin expected a finite number"):
        LearnedSentinel(np.ones(3, np.float32), margin=float("inf"))


def test_learned_uses_the_supplied_score_fn() -> None:
    sentinel = LearnedSentinel(np.ones(3, np.float32), score_fn=lambda q, v: float(np.linalg.norm(q - v)))
    assert sentinel.threshold(np.ones(3, np.float32)) == 0.0
    assert sentinel.threshold(np.zeros(3, np.float32)) == pytest.approx(np.sqrt(3))


def test_learned_rejects_bad_vectors_and_queries() -> None:
    with pytest.raises(InvalidVectorError, match="finite 1-D float array"):
        LearnedSentinel(np.array([1.0, np.nan], np.float32))
    with pytest.raises(InvalidVectorError):
        LearnedSentinel(np.ones((2, 2), np.float32))
    with pytest.raises(DimensionMismatchError, match=r"expected shape \(3,\), received \(4,\)"):
        LearnedSentinel(np.ones(3, np.float32)).threshold(np.ones(4, np.float32))


def test_save_and_load_beside_a_store(store: MemoryStore, rng: np.random.Generator) -> None:
    keys = unit(rng, 3)
    store.add_many([record(i) for i in range(3)], keys)
    fixed = FixedSentinel.calibrate([0.9, 0.8], [0.1, 0.2, 0.3], 0.0)
    fixed.save(store.sentinel_dir)
    loaded = load_sentinel(store.sentinel_dir)
    assert isinstance(loaded, FixedSentinel)
    assert loaded.value == fixed.value
    assert loaded.calibration == fixed.calibration
    hits = store.search(keys[0], k=3)[0]
    assert loaded.admit(keys[0], hits) == fixed.admit(keys[0], hits)

    learned = LearnedSentinel(unit(rng, 1)[0])
    learned.save(store.sentinel_dir)  # replaces the fixed one
    assert json.loads((store.sentinel_dir / "sentinel.json").read_text())["kind"] == "learned"
    again = load_sentinel(store.sentinel_dir, score_fn=lambda q, v: 0.25)
    assert isinstance(again, LearnedSentinel)
    np.testing.assert_array_equal(again.vector, learned.vector)
    assert again.threshold(keys[0]) == 0.25
    default = LearnedSentinel.load(store.sentinel_dir)
    assert default.threshold(keys[0]) == pytest.approx(float(keys[0] @ learned.vector), abs=1e-6)


def test_sentinels_satisfy_the_protocol() -> None:
    sentinels: list[Sentinel] = [FixedSentinel(0.1), LearnedSentinel(np.ones(2, np.float32))]
    assert [s.name for s in sentinels] == ["fixed", "learned"]


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(MemoryNotFoundError, match="save\\(\\) one first"):
        load_sentinel(tmp_path)
    (tmp_path / "sentinel.json").write_text(json.dumps({"kind": "oracle"}))
    with pytest.raises(IncompatibleArtifactError, match="received 'oracle'"):
        load_sentinel(tmp_path)
    with pytest.raises(IncompatibleArtifactError, match="kind 'fixed'"):
        FixedSentinel.load(tmp_path)
    (tmp_path / "sentinel.json").write_text(json.dumps({"kind": "learned", "dim": 3}))
    with pytest.raises(StoreError, match=r"sentinel\.npy"):
        load_sentinel(tmp_path)
