"""Where recall keeps its files: the model cache and the default persistent memory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "RECALL_CACHE_DIR"
DATA_ENV = "RECALL_DATA_DIR"


def cache_dir() -> Path:
    """Dequantized model caches live here; override with $RECALL_CACHE_DIR."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("recall"))


def data_dir() -> Path:
    """User data (default memory, REPL history); override with $RECALL_DATA_DIR."""
    return Path(os.environ.get(DATA_ENV) or platformdirs.user_data_dir("recall"))


def default_memory_dir() -> Path:
    """The persistent memory `recall repl` and `recall edit` use when no --memory is given."""
    return data_dir() / "memory"
