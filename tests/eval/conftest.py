"""Shared fixtures for the eval harness tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """/work/shared/data, next to the checkout; tests on real files skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"staged benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
