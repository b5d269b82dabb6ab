"""Helpers shared by the memory_store tests: unit vectors, records and an independent SQLite reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from memory_store import EditRecord

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """n random unit vectors, float32 (the store does not normalise; recall does)."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def record(i: int, namespace: str = "default") -> EditRecord:
    return EditRecord(prompt=f"Who is person {i}?", target=f"Person {i}", namespace=namespace)


def sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read edits.sqlite directly (read-only), bypassing the store, to check what is really on disk."""
    conn = sqlite3.connect(f"file:{path / 'edits.sqlite'}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()
