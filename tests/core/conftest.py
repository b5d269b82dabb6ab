"""Fixtures for recall's own tests: memories on the tiny llama (tests/conftest.py) and the hashing encoder."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bias_backend import BiasBackend, NoForgetBiasBackend

from recall.backends import Capability, get_backend, register_backend, registered_backends
from recall.config import RecallConfig, load_config
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder

# The test-only in-model backends join the registry, so every contract suite runs on them too.
register_backend(BiasBackend)
register_backend(NoForgetBiasBackend)

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


def backends_with(capability: Capability, present: bool = True) -> list[str]:
    """Registered backends that have (or lack) `capability`: what a contract suite runs over."""
    return [n for n in registered_backends() if (capability in get_backend(n).capabilities) == present]


@pytest.fixture
def backend_config(request: pytest.FixtureRequest) -> Callable[[str], RecallConfig]:
    """name -> the backend's config on the tiny llama: its preset plus the `tiny_settings` it carries,
    a value "{fixture}" replaced by that fixture's value (e.g. the tiny RECIPE knowledge model)."""

    def build(name: str) -> RecallConfig:
        overrides = ["model.name=tiny"]
        for key, value in get_backend(name).cls.tiny_settings.items():
            if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
                value = str(request.getfixturevalue(value[1:-1]))
            overrides.append(f"{key}={'null' if value is None else value}")
        return load_config(backend=name, overrides=overrides)

    return build


OpenMemory = Callable[..., EditMemory]


@pytest.fixture
def open_memory(
    tmp_path: Path, tiny_lm: LanguageModel, backend_config: Callable[[str], RecallConfig]
) -> Iterator[OpenMemory]:
    """(name, folder, reopen=False, lm=None, **fields) -> a memory of backend `name` under tmp_path/folder
    on the tiny llama (or `lm`): its tiny settings, then `fields` replaced in its backend config; with
    reopen, the memory already there, as it was saved."""
    opened: list[EditMemory] = []

    def factory(
        name: str, folder: str, *, reopen: bool = False, lm: LanguageModel | None = None, **backend: Any
    ) -> EditMemory:
        if reopen:
            memory = EditMemory.open(tmp_path / folder, lm=lm or tiny_lm)
        else:
            config = backend_config(name)
            config = dataclasses.replace(config, backend=dataclasses.replace(config.backend, **backend))
            memory = EditMemory.create(tmp_path / folder, config, lm=lm or tiny_lm)
        opened.append(memory)
        return memory

    yield factory
    for memory in opened:
        memory.close()
