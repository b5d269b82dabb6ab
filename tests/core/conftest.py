"""Fixtures for recall's own tests: memories on the tiny llama (tests/conftest.py) and the hashing encoder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recall.config import RecallConfig, load_config
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_config() -> RecallConfig:
    # The hashing encoder's cosines are lower than MiniLM's: a looser gate, and strict conflicts.
    return load_config(
        backend="lte", overrides=["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]
    )


@pytest.fixture
def make_memory(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> Iterator[Callable[..., EditMemory]]:
    opened: list[EditMemory] = []

    def factory(name: str = "memory", config: RecallConfig | None = None) -> EditMemory:
        memory = EditMemory.create(
            tmp_path / name, config or tiny_config, lm=tiny_lm, encoder=HashingEncoder()
        )
        opened.append(memory)
        return memory

    yield factory
    for memory in opened:
        memory.close()  # idempotent: tests may have closed it already
