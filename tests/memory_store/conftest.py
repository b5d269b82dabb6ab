"""Fixtures for the memory_store tests: a fixed-seed generator and a fresh open store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DIM

from memory_store import MemoryStore


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "memory"


@pytest.fixture
def store(store_path: Path) -> Iterator[MemoryStore]:
    with MemoryStore.open(store_path, dim=DIM, encoder_id="test-encoder", create=True) as opened:
        yield opened
