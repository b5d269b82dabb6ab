"""Greedy answers to many prompts from one packed prefill.

An evaluation asks each edit's question and its rephrase under the same RECIPE prompt, and every
question opens with the chat template's system turn: in a left-padded batch each row computes that
shared beginning again, and on a CPU the prefill is most of a short answer's cost. Here the prompts go
through recall/lm/packing.py's rows (prefix and stem once per row, each prompt's own tokens after
them), then each prompt's keys and values, gathered from its row at the positions it saw, form a
left-padded cache (n, heads, W, head_dim) from which the answers decode together, one token a step,
at the positions a row of their own would give them. Greedy answers equal generate()'s (the packed
matmuls round differently, ~1e-5 in the logits).

An evaluation also scores targets after the very questions it asks (the edit prompt and its rephrase,
each under its RECIPE prompt): `score_and_decode` runs both in the same packed rows, the questions to
answer as branches with an empty target, so their prefill is the scoring pass itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

from recall.lm.loading import LanguageModel
from recall.lm.packing import Group, Prefill, Prefix, group_items, packed_pass
from recall.lm.scoring import head_logits, stop_ids, target_scores
from recall.results import TargetScore

# generate() settings that change a greedy answer, with their neutral values: a model whose generation
# config sets another value is decoded by generate(), which applies it.
_NEUTRAL: dict[str, tuple[object, ...]] = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "min_length": (None, 0),
}


def decodable(lm: LanguageModel) -> bool:
    """Whether `decode_packed` gives generate()'s answers for this model: one full-attention cache per
    layer (no sliding windows, whose caches keep only a window), a generation config that changes no
    greedy step, and no serving engine."""
    config: Any = getattr(lm.model, "generation_config", None)
    neutral = all(getattr(config, name, None) in values for name, values in _NEUTRAL.items())
    return lm.engine is None and neutral and getattr(lm.model.config, "sliding_window", None) is None


@torch.inference_mode()
def decode_packed(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    budgets: Sequence[int],
    prefixes: Sequence[Prefix] | None,
    batch_size: int,
    min_new_tokens: int = 0,
) -> list[str]:
    """Each prompt's greedy answer (its new tokens up to its budget and its first end token), in prompt
    order. Decoding batches hold up to `batch_size` prompts, longest rows first."""
    groups = group_items([(list(p), []) for p in prompts], prefixes, branches=batch_size)
    groups.sort(key=lambda g: -g.length)
    texts: dict[int, str] = {}
    batch: list[Group] = []
    for group in [*groups, None]:
        if batch and (group is None or sum(len(g.items) for g in batch) + len(group.items) > batch_size):
            prefill = packed_pass(lm, batch, keep_cache=True).prefill
            answers = _decode(lm, prefill, [budgets[i] for i in prefill.order], min_new_tokens)
            texts.update(zip(prefill.order, answers, strict=True))
            batch = []
        if group is not None:
            batch.append(group)
    return [texts[i] for i in range(len(prompts))]


@torch.inference_mode()
def score_and_decode(
    lm: LanguageModel,
    items: Sequence[tuple[list[int], list[int]]],
    prompts: Sequence[list[int]],
    budgets: Sequence[int],
    batch_size: int,
    prefixes: tuple[Sequence[Prefix], Sequence[Prefix]] | None = None,
    min_new_tokens: int = 0,
) -> tuple[list[TargetScore], list[str]]:
    """`score_ids(items)` and `decode_packed(prompts)` in one packed pass, for a `decodable` model: rows
    of `batch_size` groups, longest first, each scoring its targets and prefilling its prompts to answer;
    those prompts then decode from its cache, `4 * batch_size` at a time (a CPU reads the weights once a
    step for all of them). `prefixes`: (one per item, one per prompt). The same scores and answers as
    the two calls (packed matmuls round differently)."""
    everything = [*items, *((list(p), []) for p in prompts)]
    every_prefix = None if prefixes is None else [*prefixes[0], *prefixes[1]]
    groups = sorted(group_items(everything, every_prefix), key=lambda g: -g.length)
    scores: dict[int, TargetScore] = {}
    texts: dict[int, str] = {}
    for start in range(0, len(groups), batch_size):
        batch = groups[start : start + batch_size]
        asks = any(index >= len(items) for g in batch for index in g.items)
        packed = packed_pass(lm, batch, keep_cache=asks)
        if packed.scored:
            targets = [everything[i][1] for i in packed.scored]
            found = target_scores(targets, head_logits(lm, packed.states))
            scores.update(zip(packed.scored, found, strict=True))
        prefill = packed.prefill
        # an item with an empty target is scored as empty, not answered
        asked = [k for k, i in enumerate(prefill.order) if i >= len(items)]
        for first in range(0, len(asked), 4 * batch_size):
            part = prefill.part(asked[first : first + 4 * batch_size])
            answers = _decode(lm, part, [budgets[i - len(items)] for i in part.order], min_new_tokens)
            texts.update(zip(part.order, answers, strict=True))
        del packed, prefill  # the rows' cache, before the next batch's
    empty = TargetScore((), ())
    return (
        [scores.get(i, empty) for i in range(len(items))],
        [texts[len(items) + j] for j in range(len(prompts))],
    )


def _cache(lm: LanguageModel, prefill: Prefill) -> tuple[DynamicCache, torch.Tensor, list[int]]:
    """(the left-padded cache of every prompt's own positions, its attention mask (n, W), each prompt's
    length)."""
    lengths = [len(c) for c in prefill.contexts]
    width = max(lengths)
    rows = torch.tensor(prefill.rows)[:, None]  # (n, 1)
    cols = torch.zeros((len(lengths), width), dtype=torch.long)  # (n, W): left padding reads position 0
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, context in enumerate(prefill.contexts):
        cols[i, width - len(context) :] = torch.tensor(context)
        mask[i, width - len(context) :] = 1
    rows, cols = rows.to(lm.device), cols.to(lm.device)
    cache = DynamicCache(config=lm.model.config)
    for index, layer in enumerate(prefill.cache.layers):
        # (R, h, Wr, hd)[rows, :, cols] -> (n, W, h, hd) -> (n, h, W, hd)
        keys = layer.keys[rows, :, cols].transpose(1, 2).contiguous()
        values = layer.values[rows, :, cols].transpose(1, 2).contiguous()
        cache.update(keys, values, index)
    return cache, mask.to(lm.device), lengths


def _decode(lm: LanguageModel, prefill: Prefill, budgets: Sequence[int], min_new_tokens: int) -> list[str]:
    """Greedy steps for every prompt together; a prompt that ends (its end token or its budget) leaves
    the batch, so the steps after it cost only the answers still running."""
    stops = stop_ids(lm)
    cache, mask, lengths = _cache(lm, prefill)
    logits = head_logits(lm, prefill.hidden)  # (n, V): each prompt's next-token logits
    positions = torch.tensor(lengths, device=lm.device)[:, None]  # (n, 1): where each answer starts
    tokens: list[list[int]] = [[] for _ in budgets]
    running = list(range(len(budgets)))  # the prompt of each cache row
    model: Any = lm.model
    for step in range(max(budgets, default=0)):
        if step < min_new_tokens:  # generate()'s min_new_tokens: no end token before it
            logits[:, stops] = float("-inf")
        chosen = logits.argmax(-1)  # (rows,)
        keep = []  # the cache rows whose answer goes on
        for row, (i, token) in enumerate(zip(running, chosen.tolist(), strict=True)):
            if token in stops or len(tokens[i]) >= budgets[i]:
                continue
            tokens[i].append(token)
            if len(tokens[i]) < budgets[i]:
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(running):
            mask, positions, chosen = _select(cache, keep, mask, positions, chosen)
            running = [running[row] for row in keep]
        mask = torch.cat([mask, mask.new_ones((len(running), 1))], dim=1)
        out = model(
            input_ids=chosen[:, None], attention_mask=mask, position_ids=positions + step, cache=cache
        )
        logits = out.logits[:, -1].float()
    return [str(lm.tokenizer.decode(t, skip_special_tokens=True)).strip() for t in tokens]


def _select(cache: DynamicCache, rows: Sequence[int], *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Keep only the batch rows `rows` (in their order) of the cache, in place, and of each tensor."""
    index = torch.tensor(list(rows), device=tensors[0].device)
    cache.batch_select_indices(index)
    return [t[index] for t in tensors]
