"""Sentinels decide which hits are in scope: a fixed calibrated threshold or a learned per-query one."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memory_store.errors import (
    CorruptStoreError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    InvalidArgumentError,
    InvalidVectorError,
    MemoryNotFoundError,
)
from memory_store.files import atomic_write, atomic_write_json
from memory_store.records import SearchHit

__all__ = ["SENTINEL_FILE", "FixedSentinel", "LearnedSentinel", "ScoreFn", "Sentinel", "load_sentinel"]

SENTINEL_FILE = "sentinel.json"
_VECTOR_FILE = "sentinel.npy"
_FORMAT_VERSION = 1
# Slack for target * n landing a hair below an integer (0.29 * 100 == 28.999999999999996).
_COUNT_EPS = 1e-9

ScoreFn = Callable[[np.ndarray, np.ndarray], float]


class Sentinel(Protocol):
    """Admits the hits that score strictly above `threshold(query)`; a hit exactly at it is rejected."""

    name: str

    def threshold(self, query: np.ndarray) -> float: ...

    def admit(self, query: np.ndarray, hits: Sequence[SearchHit]) -> list[SearchHit]: ...

    def save(self, directory: Path) -> None: ...


def _scores(values: object, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not len(arr):
        raise InvalidArgumentError(
            f"{what} expected at least one score, received none; score a held-out set first"
        )
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{what} expected finite scores, received {arr[~np.isfinite(arr)][0]!r}")
    return arr


def _admit(threshold: float, hits: Sequence[SearchHit]) -> list[SearchHit]:
    return [hit for hit in hits if hit.score > threshold]


def _read_json(directory: Path) -> dict[str, Any]:
    path = Path(directory) / SENTINEL_FILE
    if not path.exists():
        raise MemoryNotFoundError(
            f"expected a saved sentinel at {str(path)!r}, received no such file; save() one first"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"{str(path)!r} expected sentinel JSON, received an error: {exc}") from exc
    if not isinstance(data, dict) or data.get("format_version", _FORMAT_VERSION) != _FORMAT_VERSION:
        raise IncompatibleArtifactError(
            f"{str(path)!r} expected a sentinel of format_version {_FORMAT_VERSION}, received {data!r:.200}"
        )
    return data


class FixedSentinel:
    """One global cut-off for every query, usually from `calibrate` on held-out scores."""

    name = "fixed"

    def __init__(self, threshold: float, *, calibration: dict[str, float] | None = None) -> None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            raise InvalidArgumentError(f"threshold expected a finite float, received {threshold!r}")
        self.value = float(threshold)
        self.calibration = dict(calibration or {})  # rates measured by calibrate(), saved alongside

    def __repr__(self) -> str:
        return f"FixedSentinel(threshold={self.value!r})"

    def threshold(self, query: np.ndarray) -> float:
        return self.value

    def admit(self, query: np.ndarray, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """The hits scoring strictly above the threshold, in their order."""
        return _admit(self.value, hits)

    @staticmethod
    def rates(threshold: float, in_scope_scores: object, out_of_scope_scores: object) -> tuple[float, float]:
        """(false_accept, false_reject): the share of out-of-scope scores > threshold and of in-scope
        scores <= threshold."""
        inside = _scores(in_scope_scores, "in_scope_scores")
        outside = _scores(out_of_scope_scores, "out_of_scope_scores")
        return float(np.mean(outside > threshold)), float(np.mean(inside <= threshold))

    @classmethod
    def calibrate(
        cls, in_scope_scores: object, out_of_scope_scores: object, target_false_accept: float = 0.01
    ) -> FixedSentinel:
        """The smallest threshold whose false-accept rate on `out_of_scope_scores` is <= the target.

        With a allowed false accepts (floor(target * n)), that is the (a+1)-th largest out-of-scope score:
        ties at it are all rejected, any lower cut-off would accept a+1. The rates are kept in
        `calibration` (false_accept, false_reject, target, counts).
        """
        if not isinstance(target_false_accept, (int, float)) or not 0.0 <= target_false_accept < 1.0:
            raise InvalidArgumentError(
                f"target_false_accept expected a float in [0, 1), received {target_false_accept!r}"
            )
        inside = _scores(in_scope_scores, "in_scope_scores")
        outside = _scores(out_of_scope_scores, "out_of_scope_scores")
        allowed = math.floor(target_false_accept * len(outside) + _COUNT_EPS)
        threshold = float(np.sort(outside)[::-1][allowed])
        false_accept, false_reject = cls.rates(threshold, inside, outside)
        return cls(
            threshold,
            calibration={
                "false_accept": false_accept,
                "false_reject": false_reject,
                "target_false_accept": float(target_false_accept),
                "num_in_scope": float(len(inside)),
                "num_out_of_scope": float(len(outside)),
            },
        )

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            directory / SENTINEL_FILE,
            {"kind": self.name, "format_version": _FORMAT_VERSION, "threshold": self.value,
             "calibration": self.calibration},
        )  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> FixedSentinel:
        data = _read_json(directory)
        if data.get("kind") != cls.name:
            raise IncompatibleArtifactError(
                f"{str(directory)!r} expected a sentinel of kind {cls.name!r}, received {data.get('kind')!r}"
            )
        return cls(data["threshold"], calibration=data.get("calibration"))


def _inner_product(query: np.ndarray, vector: np.ndarray) -> float:
    return float(np.dot(query, vector))


class LearnedSentinel:
    """A per-query cut-off, `score_fn(query, vector) + margin`: RECIPE's knowledge sentinel.

    The default score is the inner product with the sentinel vector; recall passes its own scoring
    function (for example the trained prompt encoder's similarity). `margin` (0 in RECIPE) is what a
    hit must beat the sentinel by; training calibrates it on held-out out-of-scope queries.
    """

    name = "learned"

    def __init__(self, vector: np.ndarray, score_fn: ScoreFn | None = None, margin: float = 0.0) -> None:
        arr = np.asarray(vector)
        if arr.dtype.kind != "f" or arr.ndim != 1 or not len(arr) or not np.isfinite(arr).all():
            raise InvalidVectorError(
                f"sentinel vector expected a finite 1-D float array, received dtype {arr.dtype} "
                f"shape {arr.shape}"
            )
        if not math.isfinite(margin):
            raise InvalidArgumentError(f"sentinel margin expected a finite number, received {margin!r}")
        self.vector = arr.astype(np.float32)
        self.score_fn: ScoreFn = score_fn if score_fn is not None else _inner_product
        self.margin = float(margin)

    def __repr__(self) -> str:
        return f"LearnedSentinel(dim={len(self.vector)}, margin={self.margin:g})"

    def threshold(self, query: np.ndarray) -> float:
        query = np.asarray(query, dtype=np.float32)
        if query.shape != self.vector.shape:
            raise DimensionMismatchError(
                f"sentinel query expected shape {self.vector.shape}, received {query.shape}; "
                "pass one query vector"
            )
        return float(self.score_fn(query, self.vector)) + self.margin

    def admit(self, query: np.ndarray, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """The hits scoring strictly above this query's threshold, in their order."""
        return _admit(self.threshold(query), hits)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # The vector first: sentinel.json names the kind, so it is written last and only once both exist.
        atomic_write(directory / _VECTOR_FILE, lambda tmp: _write_npy(tmp, self.vector))
        atomic_write_json(
            directory / SENTINEL_FILE,
            {
                "kind": self.name,
                "format_version": _FORMAT_VERSION,
                "dim": len(self.vector),
                "margin": self.margin,
            },
        )

    @classmethod
    def load(cls, directory: Path, score_fn: ScoreFn | None = None) -> LearnedSentinel:
        directory = Path(directory)
        data = _read_json(directory)
        if data.get("kind") != cls.name:
            raise IncompatibleArtifactError(
                f"{str(directory)!r} expected a sentinel of kind {cls.name!r}, received {data.get('kind')!r}"
            )
        try:
            vector = np.load(directory / _VECTOR_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptStoreError(
                f"{str(directory)!r} expected {_VECTOR_FILE}, received an error: {exc}"
            ) from exc
        if vector.shape != (data.get("dim"),):
            raise CorruptStoreError(
                f"{str(directory)!r}: {_VECTOR_FILE} expected shape ({data.get('dim')!r},), "
                f"received {vector.shape}"
            )
        margin = data.get("margin", 0.0)  # sentinels saved before margins existed have none
        if not isinstance(margin, int | float) or isinstance(margin, bool):
            raise CorruptStoreError(
                f"{str(directory)!r}: sentinel margin expected a number, received {margin!r}"
            )
        return cls(vector, score_fn, float(margin))


def _write_npy(path: Path, vector: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, vector, allow_pickle=False)


def load_sentinel(directory: Path, score_fn: ScoreFn | None = None) -> Sentinel:
    """Load whichever sentinel `directory` holds (`score_fn` is used by a learned one)."""
    kind = _read_json(Path(directory)).get("kind")
    if kind == FixedSentinel.name:
        return FixedSentinel.load(directory)
    if kind == LearnedSentinel.name:
        return LearnedSentinel.load(directory, score_fn)
    raise IncompatibleArtifactError(
        f"{str(directory)!r} expected a sentinel kind of 'fixed' or 'learned', received {kind!r}"
    )
