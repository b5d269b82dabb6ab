"""Packed prefill and batched greedy decoding (recall/lm/decoding.py) give generate()'s answers."""

from __future__ import annotations

import pytest
import torch

from recall.lm.decoding import decodable
from recall.lm.decoding_config import GenerationConfig
from recall.lm.generation import generate_batch, generate_ids
from recall.lm.loading import LanguageModel


def _prompts(lm: LanguageModel) -> list[list[int]]:
    ids = sorted(lm.tokenizer.get_vocab().values())[10:40]
    stem = ids[:6]  # like the chat template's system turn, which opens every question
    return [*(stem + ids[6 + i : 9 + i] for i in range(5)), ids[20:23], stem[:3]]


@pytest.mark.parametrize("min_new_tokens", [0, 2])
def test_packed_answers_equal_one_by_one(deep_lm: LanguageModel, min_new_tokens: int) -> None:
    assert decodable(deep_lm)
    prompts = _prompts(deep_lm)
    hidden = int(deep_lm.model.config.hidden_size)
    torch.manual_seed(0)
    shared = torch.randn(4, hidden)
    # 0 and 1 share a prefix (an edit's question and its rephrase), 2 has its own, the rest none
    prefixes = [shared.clone(), shared.clone(), torch.randn(2, hidden), None, None, None, None]
    budgets = [5, 3, 8, 2, 6, 4, 7]
    gens = [GenerationConfig(max_new_tokens=b, min_new_tokens=min_new_tokens) for b in budgets]
    single = [generate_ids(deep_lm, p, g, x) for p, g, x in zip(prompts, gens, prefixes, strict=True)]
    assert any(single)
    for batch_size in (1, 3, 16):
        assert generate_batch(deep_lm, prompts, gens, prefixes, batch_size) == single
    plain = [generate_ids(deep_lm, p, g) for p, g in zip(prompts, gens, strict=True)]
    assert generate_batch(deep_lm, prompts, gens, None, 4) == plain


def test_a_generation_config_that_changes_greedy_steps_goes_to_generate(deep_lm: LanguageModel) -> None:
    config = deep_lm.model.generation_config
    before = config.repetition_penalty
    assert decodable(deep_lm)
    config.repetition_penalty = 1.3
    try:
        assert not decodable(deep_lm)
        prompts = _prompts(deep_lm)
        gens = [GenerationConfig(max_new_tokens=6) for _ in prompts]
        single = [generate_ids(deep_lm, p, g) for p, g in zip(prompts, gens, strict=True)]
        assert generate_batch(deep_lm, prompts, gens, None, 4) == single
    finally:
        config.repetition_penalty = before
