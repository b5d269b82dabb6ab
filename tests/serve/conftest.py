"""Fixtures for the server's tests: a live server on the tiny llama and the hashing encoder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_server import LiveServer

from recall.config import load_config
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder
from recall.serve.tenants import Tenants

os.environ.setdefault("HF_HUB_OFFLINE", "1")

StartServer = Callable[..., LiveServer]


@pytest.fixture
def start_server(tmp_path: Path, tiny_lm: LanguageModel) -> Iterator[StartServer]:
    """(backend="lte", tenants=None, folder="memory") -> a live server over a new tiny memory."""
    servers: list[LiveServer] = []

    def start(backend: str = "lte", tenants: Tenants | None = None, folder: str = "memory") -> LiveServer:
        overrides = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]
        config = load_config(backend=backend, overrides=overrides)
        memory = EditMemory.create(tmp_path / folder, config, lm=tiny_lm, encoder=HashingEncoder())
        server = LiveServer(memory, tenants)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.service.close()
