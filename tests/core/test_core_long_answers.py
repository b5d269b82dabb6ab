"""Issue #32: an admitted edit's long target comes back whole: the answer length follows it, unless the
caller sets one, within the model's context."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import OpenMemory

from recall.backends import GenerationConfig
from recall.memory import EditMemory

MakeMemory = Callable[..., EditMemory]
LONG = " ".join(["jane doe is the ceo of acme and the author of the novel"] * 6)  # 72 words


def _lengths(memory: EditMemory, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = memory.backend.generate

    def spy(prompt: str, hits: object, gen: GenerationConfig) -> object:
        seen.append(gen.max_new_tokens)
        return real(prompt, hits, gen)  # type: ignore[arg-type]

    monkeypatch.setattr(memory.backend, "generate", spy)
    return seen


def test_the_answer_length_follows_the_admitted_edit(
    make_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = make_memory()
    memory.add("who is the ceo of acme ?", LONG)
    seen = _lengths(memory, monkeypatch)
    target_tokens = len(memory.lm.tokenizer(LONG, add_special_tokens=False).input_ids)
    assert memory.ask("who is the ceo of acme ?").used_memory
    assert seen[-1] == target_tokens + 8 > memory.config.model.max_new_tokens
    assert not memory.ask("largest planet ?").used_memory  # nothing admitted: the default
    assert seen[-1] == memory.config.model.max_new_tokens
    memory.ask("who is the ceo of acme ?", max_new_tokens=5)  # the caller's length wins
    assert seen[-1] == 5


def test_the_answer_length_stays_within_the_context(
    make_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = make_memory()  # the tiny llama reads 256 positions
    huge = " ".join(["jane doe"] * 200)  # 400 tokens
    memory.add("who is the ceo of acme ?", huge)
    seen = _lengths(memory, monkeypatch)
    query = "who is the ceo of acme ?"
    memory.ask(query)
    assert seen[-1] == 256 - len(memory.lm.tokenizer(query, add_special_tokens=False).input_ids)


def test_a_recipe_prompt_holds_the_whole_edit_unless_capped(open_memory: OpenMemory) -> None:
    from recall.backends.recipe.backend import RecipeBackend
    from recall.lm.prompts import exchange_text

    memory = open_memory("recipe", "whole")
    added = memory.add("who is the ceo of acme ?", LONG)
    backend = memory.backend
    assert isinstance(backend, RecipeBackend)
    learned = backend.knowledge.settings.prompt_tokens
    exchange = exchange_text(memory.lm, "who is the ceo of acme ?", LONG)
    whole = len(memory.lm.tokenizer(exchange, add_special_tokens=False).input_ids)
    assert backend._prompts[added.edit_id].shape[0] == learned + whole  # not cut at the trained 3
    capped = open_memory("recipe", "capped", text_tokens=0)  # 0: the artifact's own cap
    again = capped.add("who is the ceo of acme ?", LONG)
    assert isinstance(capped.backend, RecipeBackend)
    assert (
        capped.backend._prompts[again.edit_id].shape[0]
        == learned + backend.knowledge.settings.statement_tokens
    )
