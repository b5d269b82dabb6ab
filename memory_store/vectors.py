"""Validation of key and query arrays: float, finite, the memory's dim, a usable shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_store.errors import DimensionMismatchError, InvalidArgumentError, InvalidVectorError

__all__ = ["key_array", "key_arrays", "query_array"]


def _float_array(value: object, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise InvalidVectorError(
            f"{what} expected a float32 array, received a ragged sequence ({exc})"
        ) from exc
    if arr.dtype.kind != "f":
        raise InvalidVectorError(
            f"{what} expected a float32 array, received dtype {arr.dtype} with shape {arr.shape}; "
            "pass the encoder's float output"
        )
    return arr


def _check_finite(arr: np.ndarray, what: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise InvalidVectorError(
            f"{what} expected finite float32 values, received {arr[row, col]!r} at row {row}, column {col}; "
            "check the encoder output (float64 values beyond float32 range become inf)"
        )


def _matrix(value: object, dim: int, what: str) -> np.ndarray:
    arr = _float_array(value, what)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVectorError(
            f"{what} expected shape (dim,) or (n, dim) with dim={dim}, received shape {arr.shape}"
        )
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{what} expected dim {dim} (the memory's), received shape {arr.shape}; "
            "encode with the encoder this memory was created with"
        )
    with np.errstate(over="ignore"):  # overflow to inf is reported just below, with the position
        out = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(out, what)
    return out


def key_array(value: object, dim: int, what: str = "vector") -> np.ndarray:
    """One edit's keys as a (n_keys, dim) float32 array: finite, n_keys >= 1, no all-zero key."""
    keys = _matrix(value, dim, what)
    if not len(keys):
        raise InvalidVectorError(
            f"{what} expected at least one key of dim {dim}, received shape {keys.shape}"
        )
    zero = np.flatnonzero(~keys.any(axis=1))
    if len(zero):
        raise InvalidVectorError(
            f"{what} expected non-zero keys, received an all-zero row {int(zero[0])}; an all-zero key "
            "scores 0 against every query and can never be found"
        )
    return keys


def key_arrays(vectors: Sequence[np.ndarray] | np.ndarray, count: int, dim: int) -> list[np.ndarray]:
    """Split add_many's `vectors` into one (n_keys, dim) array per record.

    A (count, dim) array gives each record one key, a (count, n_keys, dim) array n_keys each, and a
    sequence of `count` arrays lets every record have its own number of keys.
    """
    if isinstance(vectors, np.ndarray):
        if vectors.ndim not in (2, 3):
            raise InvalidVectorError(
                f"vectors expected shape (n, dim) or (n, n_keys, dim) with n={count}, received shape "
                f"{vectors.shape}"
            )
        if len(vectors) == count and count:
            # One check over the whole block instead of one per record (bulk loads of 10^5 edits).
            block = key_array(vectors.reshape(-1, vectors.shape[-1]), dim, "vectors")
            per_record = block.reshape(count, -1, dim)
            return [per_record[i] for i in range(count)]
        parts: Sequence[object] = list(vectors)
    else:
        parts = list(vectors)
    if len(parts) != count:
        raise InvalidArgumentError(
            f"add_many expected one vector entry per record ({count}), received {len(parts)}; "
            "pass them in pairs"
        )
    return [key_array(part, dim, f"vectors[{i}]") for i, part in enumerate(parts)]


def query_array(queries: object, dim: int) -> np.ndarray:
    """Queries as a (m, dim) float32 array; a single (dim,) query becomes m = 1."""
    return _matrix(queries, dim, "queries")
