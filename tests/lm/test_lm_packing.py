"""Packed scoring (recall/lm/packing.py) gives the scores of one row per item, on the tiny llama."""

from __future__ import annotations

import pytest
import torch

from recall.lm.loading import LanguageModel
from recall.lm.packing import group_items
from recall.lm.scoring import score_ids
from recall.results import TargetScore


def _items(lm: LanguageModel) -> list[tuple[list[int], list[int]]]:
    words = ["who", "is", "the", "ceo", "of", "acme", "what", "capital", "france", "zorblax"]
    vocab = [lm.tokenizer.get_vocab()[word] for word in words]
    prompt_a, prompt_b, prompt_c = vocab[:6], vocab[6:9], vocab[1:4]
    return [
        (prompt_a, vocab[7:9]),  # three targets after prompt_a, of different lengths
        (prompt_b, vocab[2:3]),
        (prompt_a, vocab[9:10]),
        (prompt_c, vocab[0:4]),
        (prompt_a, vocab[3:6]),
        (prompt_b, vocab[5:7]),  # a second target after prompt_b
    ]


def _assert_same(packed: list[TargetScore], plain: list[TargetScore]) -> None:
    assert len(packed) == len(plain)
    for a, b in zip(packed, plain, strict=True):
        assert a.target_ids == b.target_ids
        assert a.predicted_ids == b.predicted_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_packed_scores_equal_one_row_per_item(tiny_lm: LanguageModel) -> None:
    items = _items(tiny_lm)
    (row,) = group_items(items, None)  # one row: prompt_c shares nothing with the others' first id
    assert [len(b.targets) for b in row.branches] == [3, 2, 1]
    assert row.stem == []
    for batch_size in (1, 2, 16):
        _assert_same(score_ids(tiny_lm, items, batch_size), score_ids(tiny_lm, items, 16, in_order=True))


def test_prompts_share_their_stem_and_rows_stop_at_the_width(tiny_lm: LanguageModel) -> None:
    vocab = list(tiny_lm.tokenizer.get_vocab().values())[10:40]
    stem = vocab[:5]  # like the chat template's system turn, which opens every prompt
    items = [(stem + vocab[5 + i : 8 + i], vocab[20 + i : 22 + i]) for i in range(6)]
    items.append((stem[:3], vocab[28:30]))  # a prompt that is all stem: it keeps its last id
    (row,) = group_items(items, None)
    assert row.stem == stem[:2]
    assert [b.prompt for b in row.branches][-1] == stem[2:3]
    narrow = group_items(items, None, width=12)
    assert len(narrow) > 1
    assert all(g.length <= 12 or len(g.branches) == 1 for g in narrow)
    assert sorted(i for g in narrow for i in g.items) == list(range(len(items)))
    plain = score_ids(tiny_lm, items, 16, in_order=True)
    _assert_same(score_ids(tiny_lm, items, 3), plain)
    _assert_same(score_ids(tiny_lm, items[:6], 3), plain[:6])  # the five-id stem shared by six prompts


def test_packed_scores_with_prefixes_equal_one_row_per_item(tiny_lm: LanguageModel) -> None:
    items = _items(tiny_lm)
    hidden = int(tiny_lm.model.config.hidden_size)
    torch.manual_seed(0)
    shared = torch.randn(3, hidden)
    # Equal prefixes by value (distinct tensors) group; another prefix or none keeps items apart.
    prefixes = [shared.clone(), None, shared.clone(), torch.randn(2, hidden), torch.randn(3, hidden), None]
    # rows by prefix: (0, 2) share one, (1, 5) share none; 3 and 4 have their own
    assert sorted(g.items for g in group_items(items, prefixes)) == [[0, 2], [1, 5], [3], [4]]
    packed = score_ids(tiny_lm, items, 4, prefixes)
    _assert_same(packed, score_ids(tiny_lm, items, 16, prefixes, in_order=True))
