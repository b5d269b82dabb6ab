"""Generation on a serving engine (recall/lm/engine.py): the request bodies on the tiny llama (vLLM's
token ids and prompt_embeds, text for other engines), and which backends `recall serve` lets use one.
The real engine run is in test_serve_engine_real.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
import torch

from recall.backends import get_backend
from recall.errors import ConfigError, UnsupportedOperationError
from recall.lm.engine import CompletionEngine, decode_embeds
from recall.lm.loading import LanguageModel
from recall.lm.scoring import embed_right, prompt_ids, stop_ids
from recall.memory import EditMemory
from recall.serve.engines import connect_engine

QUESTION = "who is the ceo of acme ?"


def test_vllm_gets_token_ids_or_the_exact_prompt_embeds(tiny_lm: LanguageModel) -> None:
    ids = prompt_ids(tiny_lm, QUESTION)
    engine = CompletionEngine("http://127.0.0.1:9/v1", "m", "vllm")
    body = engine.request(tiny_lm, ids, 7, min_new_tokens=2)
    assert body["prompt"] == ids
    assert body["max_tokens"] == 7
    assert body["min_tokens"] == 2
    assert body["temperature"] == 0.0
    assert body["stop_token_ids"] == stop_ids(tiny_lm)
    assert "prompt_embeds" not in body
    prefix = torch.randn(3, tiny_lm.model.config.hidden_size)
    with_prefix = engine.request(tiny_lm, ids, 7, prefix=prefix)
    assert "prompt" not in with_prefix
    expected, _ = embed_right(tiny_lm, [ids], [prefix])  # (1, 3 + T, d)
    sent = decode_embeds(with_prefix["prompt_embeds"])
    assert sent.shape == (3 + len(ids), tiny_lm.model.config.hidden_size)
    assert torch.equal(sent, expected[0])


def test_other_engines_get_the_prompt_text_and_refuse_embeddings(tiny_lm: LanguageModel) -> None:
    ids = prompt_ids(tiny_lm, QUESTION)
    engine = CompletionEngine("http://127.0.0.1:9/v1", "m", "openai")
    body = engine.request(tiny_lm, ids, 5)
    assert prompt_ids(tiny_lm, body["prompt"]) == ids
    with pytest.raises(UnsupportedOperationError, match="prompt_embeds"):
        engine.request(tiny_lm, ids, 5, prefix=torch.zeros(2, tiny_lm.model.config.hidden_size))


@pytest.mark.parametrize(
    ("backend", "kind", "message"),
    [
        ("rome", "vllm", "live in this process"),
        ("grace", "openai", "live in this process"),
        ("grace_retrieval", "vllm", "live in this process"),
        ("recipe", "openai", "needs --generator vllm"),
        ("lte", "openai", "needs --engine-url"),
    ],
)
def test_serve_refuses_an_engine_that_cannot_hold_the_edits(backend: str, kind: str, message: str) -> None:
    # The refusals read only the backend's class (its capabilities): a memory holding just that.
    memory = cast(EditMemory, SimpleNamespace(backend=get_backend(backend).cls))
    url = None if message.startswith("needs --engine-url") else "http://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match=message):
        connect_engine(memory, kind, url, "m")
