"""Connecting `recall serve` to a serving engine (recall/lm/engine.py): which backends can use one, the
engine's model name, and a probe that the engine answers exactly as the model in this process does."""

from __future__ import annotations

import json
import urllib.request

from recall.backends import Capability
from recall.errors import ConfigError
from recall.lm.decoding_config import GenerationConfig
from recall.lm.engine import CompletionEngine, EngineError, EngineKind
from recall.lm.generation import generate_ids
from recall.lm.prompts import render
from recall.lm.scoring import prompt_ids
from recall.memory import EditMemory

PROBE = "Name the largest planet of the solar system in one short sentence."
PROBE_TOKENS = 16


def engine_model_name(base_url: str) -> str:
    """The first model the engine lists at GET {base_url}/models."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=30) as response:
            listed = json.loads(response.read())
        return str(listed["data"][0]["id"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise EngineError(f"cannot list the models of {base_url}: {type(exc).__name__}: {exc}") from None


def connect_engine(
    memory: EditMemory, kind: str, base_url: str | None, model: str | None
) -> CompletionEngine:
    """An engine for `memory`'s answers, checked: refused where the backend's edits live in this process
    (weights, codebooks) or need prompt_embeds that `kind` cannot take, and where a probe question gets
    another answer from the engine than from the model here."""
    if kind not in ("openai", "vllm"):
        raise ConfigError(f"generator expected local, openai or vllm, received {kind!r}")
    if not base_url:
        raise ConfigError(f"--generator {kind} needs --engine-url (e.g. http://127.0.0.1:8001/v1)")
    capabilities = memory.backend.capabilities
    if capabilities.in_model:
        raise ConfigError(
            f"the {memory.backend.name} backend's edits live in this process's model (its weights or "
            "modules), which an engine does not hold: use --generator local"
        )
    if Capability.PROMPT_EMBEDS in capabilities and kind != "vllm":
        raise ConfigError(
            f"the {memory.backend.name} backend puts edits in front of the question as embeddings: it needs "
            "--generator vllm (started with --enable-prompt-embeds)"
        )
    engine_kind: EngineKind = "vllm" if kind == "vllm" else "openai"
    engine = CompletionEngine(base_url, model or engine_model_name(base_url), engine_kind)
    lm = memory.lm
    ids = prompt_ids(lm, render(lm, PROBE, use_chat_template=True))
    here = generate_ids(lm, ids, GenerationConfig(PROBE_TOKENS)) if lm.engine is None else None
    there = engine.complete(lm, ids, PROBE_TOKENS)
    if here is not None and here != there:
        raise ConfigError(
            f"the engine at {base_url} answers {there!r} where {lm.model_id} here answers {here!r}: it "
            "serves another model or decodes otherwise (serve the folder `recall export-model` writes)"
        )
    return engine
