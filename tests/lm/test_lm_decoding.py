"""Packed prefill and batched greedy decoding (recall/lm/decoding.py) give generate()'s answers."""

from __future__ import annotations

import pytest
import torch

from recall.lm.decoding import decodable
from recall.lm.decoding_config import GenerationConfig
from recall.lm.generation import generate_batch, generate_ids, score_and_generate
from recall.lm.loading import LanguageModel
from recall.lm.scoring import score_ids


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


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_scoring_and_answering_in_one_pass_equal_the_two_calls(
    deep_lm: LanguageModel, batch_size: int
) -> None:
    prompts = _prompts(deep_lm)
    hidden = int(deep_lm.model.config.hidden_size)
    torch.manual_seed(1)
    shared = torch.randn(4, hidden)
    ids = sorted(deep_lm.tokenizer.get_vocab().values())[50:60]
    # scored: the asked prompts themselves (two targets after prompt 0), another prompt, an empty target
    items = [(prompts[0], ids[:3]), (prompts[0], ids[3:5]), (prompts[1], ids[5:9]), (prompts[3], ids[:2])]
    items += [(prompts[2], []), (ids[:4], ids[4:6])]
    item_prefixes = [shared.clone(), shared.clone(), shared.clone(), None, None, torch.randn(3, hidden)]
    asked = [prompts[0], prompts[1], prompts[3], prompts[4], prompts[0]]
    asked_prefixes = [shared.clone(), shared.clone(), None, torch.randn(2, hidden), None]
    gens = [GenerationConfig(max_new_tokens=b) for b in (5, 3, 8, 2, 6)]
    scores, answers = score_and_generate(
        deep_lm, items, asked, gens, batch_size, (item_prefixes, asked_prefixes)
    )
    assert answers == generate_batch(deep_lm, asked, gens, asked_prefixes, batch_size)
    assert any(answers)
    apart = score_ids(deep_lm, items, batch_size, item_prefixes)
    assert scores[4] == apart[4]  # nothing to score, nothing answered
    assert not scores[4].target_ids
    for together, alone in zip(scores, apart, strict=True):
        assert together.target_ids == alone.target_ids
        assert together.predicted_ids == alone.predicted_ids
        assert together.logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    # without prefixes, and where the model cannot decode packed rows: the two calls
    plain_scores, plain_answers = score_and_generate(deep_lm, items, asked, gens, batch_size)
    assert plain_answers == generate_batch(deep_lm, asked, gens, None, batch_size)
    assert [s.predicted_ids for s in plain_scores] == [
        s.predicted_ids for s in score_ids(deep_lm, items, batch_size)
    ]


def test_one_pass_needs_one_min_new_tokens(deep_lm: LanguageModel) -> None:
    prompts = _prompts(deep_lm)
    gens = [GenerationConfig(max_new_tokens=3, min_new_tokens=n) for n in (0, 1)]
    with pytest.raises(ValueError, match="min_new_tokens"):
        score_and_generate(deep_lm, [(prompts[0], prompts[1])], prompts[:2], gens)
