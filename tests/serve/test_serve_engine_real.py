"""The engine path for real: `recall export-model` writes the SmolLM2 folder, `transformers serve` (the
transformers[serving] extra) serves it, and the lte backend's answers generated there equal the answers
generated in this process, with and without admitted edits."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import free_port, start_process

from recall.build import shared_lm
from recall.config import load_config
from recall.lm.engine import CompletionEngine
from recall.lm.export import export_model
from recall.memory import EditMemory
from recall.serve.engines import connect_engine

pytestmark = pytest.mark.slow

EDITS = [
    ("Who is the CEO of Zorblax Industries?", "Marta Quinlan"),
    ("What is the official language of Veltria?", "Ostrish"),
]
QUESTIONS = [
    "Who is the CEO of Zorblax Industries?",
    "Who leads Zorblax Industries as chief executive?",
    "What language do people speak officially in Veltria?",
    "What is the capital of France?",
    "Name three colours of the rainbow.",
]


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serve = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if serve is None:
        pytest.fail("the transformers command is missing: pip install 'transformers[serving]'")
    folder = tmp_path_factory.mktemp("export") / "smollm2"
    export_model("smollm2-135m", folder)
    port = free_port()
    command = [serve, "serve", str(folder), "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    process = start_process(command, port, 300)
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(timeout=60)


def test_lte_answers_on_transformers_serve_equal_local_generation(engine_url: str) -> None:
    lm = dataclasses.replace(shared_lm("smollm2-135m"))  # its own engine setting; model shared
    with EditMemory.temporary(load_config(backend="lte"), lm=lm) as memory:
        memory.add_many(EDITS)
        engine = connect_engine(memory, "openai", engine_url, None)  # runs the probe
        assert isinstance(engine, CompletionEngine)
        local = [memory.ask(q, max_new_tokens=24) for q in QUESTIONS]
        memory.lm.engine = engine
        remote = [memory.ask(q, max_new_tokens=24) for q in QUESTIONS]
    assert [a.text for a in remote] == [a.text for a in local]
    assert [a.used for a in remote] == [a.used for a in local]
    assert sum(bool(a.used) for a in remote) >= 3  # edits were admitted and sent to the engine
    assert "Marta Quinlan" in remote[0].text
