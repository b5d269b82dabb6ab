"""recall: a retrieval-augmented knowledge-editing memory for language models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recall._version import __version__

__all__ = [
    "Answer",
    "ConfigError",
    "ConflictPair",
    "Edit",
    "EditMemory",
    "EditRecord",
    "EditResult",
    "RecallConfig",
    "RecallError",
    "Retrieval",
    "StoreError",
    "TargetScore",
    "__version__",
    "load_config",
]

if TYPE_CHECKING:
    from memory_store import EditRecord
    from recall.config import RecallConfig, load_config
    from recall.errors import ConfigError, RecallError, StoreError
    from recall.memory import EditMemory
    from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore

_LAZY = {
    "EditRecord": "memory_store",
    "RecallConfig": "recall.config",
    "load_config": "recall.config",
    "ConfigError": "recall.errors",
    "RecallError": "recall.errors",
    "StoreError": "recall.errors",
    "EditMemory": "recall.memory",
    "Answer": "recall.results",
    "ConflictPair": "recall.results",
    "Edit": "recall.results",
    "EditResult": "recall.results",
    "Retrieval": "recall.results",
    "TargetScore": "recall.results",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import recall` must not import torch (the CLI's --help stays instant).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recall' has no attribute {name!r}")
