"""Teacher-forced target scoring over rendered prompt text, batched (generation: recall/lm/generation.py).

Every backend renders its prompt (with or without injected edits) and hands the text here, so the
base model and every text-prefix backend are scored and decoded by exactly one piece of code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from recall.lm.arch import ARCHS, arch_of
from recall.lm.loading import LanguageModel
from recall.lm.packing import group_items, packable, packed_pass
from recall.lm.prompts import render
from recall.results import TargetScore


def prompt_ids(lm: LanguageModel, text: str) -> list[int]:
    """Token ids of a rendered prompt. Chat-rendered text already holds its special tokens."""
    add_special = not lm.has_chat_template
    ids: list[int] = lm.tokenizer(text, add_special_tokens=add_special).input_ids
    return ids


def target_ids(lm: LanguageModel, target: str, *, leading_space: bool) -> list[int]:
    """Token ids of an answer; raw (non-chat) prompts put a space before it, as EasyEdit does."""
    ids: list[int] = lm.tokenizer((" " if leading_space else "") + target, add_special_tokens=False).input_ids
    return ids


def item_ids(
    lm: LanguageModel, prompt: str, target: str, *, use_chat_template: bool
) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) of a question and its answer as an in-model backend scores and trains
    them: the question rendered (in the chat template when wanted and the model has one), the answer
    after it (after a space for a raw prompt)."""
    text = render(lm, prompt, use_chat_template=use_chat_template)
    raw = not (use_chat_template and lm.has_chat_template)
    return prompt_ids(lm, text), target_ids(lm, target, leading_space=raw)


def pad_right(seqs: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T): right padding keeps each sequence at positions 0..len-1,
    so its logits match an unbatched run."""
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


# One continuous prompt per item (L_i, d), or None: prepended to the item's input embeddings (RECIPE).
Prefixes = Sequence[torch.Tensor | None]


def target_positions(
    items: Sequence[tuple[list[int], list[int]]], offsets: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the positions whose logits predict each target token, in item order; `offsets`
    counts the prefix vectors before each item's tokens."""
    shift = offsets or [0] * len(items)
    rows = [torch.full((len(t),), r) for r, (_, t) in enumerate(items)]
    cols = [
        torch.arange(o + len(p) - 1, o + len(p) + len(t) - 1) for (p, t), o in zip(items, shift, strict=True)
    ]
    return torch.cat(rows), torch.cat(cols)


def embed_right(
    lm: LanguageModel, seqs: Sequence[list[int]], prefixes: Prefixes
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs_embeds (B, W, d), attention_mask (B, W)): each row is [prefix; token embeddings], right
    padded like `pad_right`. Gradients flow into the prefixes."""
    embed: Any = lm.model.get_input_embeddings()
    rows = []
    for seq, prefix in zip(seqs, prefixes, strict=True):
        tokens = embed(torch.tensor(seq, device=lm.device))  # (T, d)
        rows.append(tokens if prefix is None else torch.cat([prefix.to(tokens.dtype), tokens]))
    width = max(len(r) for r in rows)
    embeds = torch.stack([torch.nn.functional.pad(r, (0, 0, 0, width - len(r))) for r in rows])
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=lm.device)
    for index, row in enumerate(rows):
        mask[index, : len(row)] = 1
    return embeds, mask


def target_logits(
    lm: LanguageModel, items: Sequence[tuple[list[int], list[int]]], prefixes: Prefixes | None = None
) -> torch.Tensor:
    """Logits predicting every target token of `items` (prompt_ids, target_ids), in item order.

    Shape (sum of target lengths, V). Differentiable: scoring calls it under inference_mode, the
    training losses with gradients (into LoRA weights, or into the `prefixes`).
    """
    pad = int(lm.tokenizer.pad_token_id or 0)
    decoder: Any = lm.model.base_model  # the transformer without its LM head (LoRA layers included)
    seqs = [p + t for p, t in items]
    offsets = [0] * len(items)
    if prefixes is None:
        input_ids, mask = pad_right(seqs, pad)  # (B, T) each
        hidden = decoder(
            input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device)
        ).last_hidden_state
    else:
        offsets = [0 if p is None else len(p) for p in prefixes]
        embeds, mask = embed_right(lm, seqs, prefixes)
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    # The vocabulary projection is the costly part (V ~ 50k): apply it at target positions only.
    rows, cols = target_positions(items, offsets)
    return head_logits(lm, hidden[rows, cols])


def head_logits(lm: LanguageModel, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
    """The model's logits (n, V) in float32 for final hidden states (n, d); with `ids` (k,), only those
    tokens' logits (n, k), at k/V of the cost."""
    head: Any = lm.model.get_output_embeddings()  # type: ignore[no-untyped-call]
    if ids is None:
        logits: torch.Tensor = head(hidden).float()
    else:
        bias = None if getattr(head, "bias", None) is None else head.bias[ids]
        logits = torch.nn.functional.linear(hidden, head.weight[ids], bias).float()
    softcap = getattr(lm.model.config, "final_logit_softcapping", None)
    if softcap:  # Gemma-style final logit soft-capping, as the model's own forward applies it
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def target_scores(targets: Sequence[list[int]], logits: torch.Tensor) -> list[TargetScore]:
    """TargetScores of `targets` from the logits (sum of their lengths, V) predicting their tokens."""
    logprobs = torch.log_softmax(logits, dim=-1)
    labels = torch.tensor([tok for t in targets for tok in t], device=logprobs.device)
    predicted = logprobs.argmax(-1).tolist()
    label_lp = logprobs.gather(1, labels[:, None])[:, 0].tolist()
    scores, offset = [], 0
    for target in targets:
        end = offset + len(target)
        scores.append(TargetScore(tuple(target), tuple(predicted[offset:end]), tuple(label_lp[offset:end])))
        offset = end
    return scores


@torch.inference_mode()
def score_ids(
    lm: LanguageModel,
    items: Sequence[tuple[list[int], list[int]]],
    batch_size: int = 16,
    prefixes: Prefixes | None = None,
    *,
    in_order: bool = False,
) -> list[TargetScore]:
    """Score each (prompt_ids, target_ids): argmax and log p of every target token, teacher-forced;
    with `prefixes`, each item's continuous prompt goes before its tokens. Scores come back in item order.

    Items that share their prefix are scored in packed rows (recall/lm/packing.py): the prefix and the
    prompt ids they share computed once, each prompt once for all its targets. Rows go longest first, so
    a batch pads to lengths close to its own: on recall eval's zsRE cases (RECIPE prompts of 0-5
    admitted edits before each question, ES/PS/NS on) batching in request order ran 41% more positions
    than it scored. `in_order`: batches of
    `batch_size` items in item order, right padded, unpacked, for backends whose hooks address a
    batch's rows and positions (GRACE)."""
    if in_order:
        scores: list[TargetScore] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            chunk_prefixes = None if prefixes is None else prefixes[start : start + batch_size]
            scores += target_scores([t for _, t in chunk], target_logits(lm, chunk, chunk_prefixes))
        return scores
    groups = sorted(group_items(items, prefixes), key=lambda g: -g.length)
    by_item: dict[int, TargetScore] = {}
    for start in range(0, len(groups), batch_size):
        batch = groups[start : start + batch_size]
        if packable(lm, batch[0].length):
            packed = packed_pass(lm, batch)
            order, logits = packed.scored, head_logits(lm, packed.states)
        else:  # wider than a sliding window: each item in a row of its own
            order = [index for g in batch for index in g.items]
            batch_prefixes = None if prefixes is None else [prefixes[i] for i in order]
            logits = target_logits(lm, [items[i] for i in order], batch_prefixes)
        by_item.update(zip(order, target_scores([items[i][1] for i in order], logits), strict=True))
    # an empty target has no token to score (packed rows predict nothing for it)
    return [by_item.get(index, TargetScore((), ())) for index in range(len(items))]


def end_of_turn_id(lm: LanguageModel) -> int | None:
    """The token that ends an answer: the chat end-of-turn token of the model's family
    (recall/lm/arch.py) when its vocabulary has one, else EOS."""
    candidates = arch_of(lm.model).end_of_turn if lm.model.config.model_type in ARCHS else ("<|im_end|>",)
    for token in candidates:
        end_of_turn = lm.tokenizer.convert_tokens_to_ids(token)
        if isinstance(end_of_turn, int) and end_of_turn != lm.tokenizer.unk_token_id:
            return end_of_turn
    eos = lm.tokenizer.eos_token_id
    return eos if isinstance(eos, int) else None


def stop_ids(lm: LanguageModel) -> list[int]:
    """Tokens that end an answer: EOS and, for chat models, the end-of-turn token."""
    stop = {lm.tokenizer.eos_token_id, end_of_turn_id(lm)}
    return sorted(i for i in stop if isinstance(i, int))
