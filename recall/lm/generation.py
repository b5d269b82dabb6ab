"""Greedy generation, the one decoding loop every backend uses, and its settings; optionally streamed as
text deltas while it runs (`recall serve`'s SSE answers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from recall.lm.decoding import decodable, decode_packed, score_and_decode
from recall.lm.decoding_config import GenerationConfig, TextSink
from recall.lm.loading import LanguageModel
from recall.lm.packing import Prefix
from recall.lm.scoring import embed_right, score_ids, stop_ids
from recall.results import TargetScore


class TextStream(BaseStreamer):
    """Feeds `sink` the answer's text as tokens arrive. Each step decodes every new token so far (an
    answer is at most a few hundred tokens) and passes on what grew; it holds back a trailing
    incomplete UTF-8 sequence (decoded as U+FFFD) and trailing whitespace, which the final answer may
    strip, and drops leading whitespace, as `generate_ids` strips the whole answer."""

    def __init__(self, lm: LanguageModel, sink: TextSink, prompt_first: bool) -> None:
        self.lm, self.sink = lm, sink
        self._skip_next = prompt_first  # generate() first puts the prompt ids when it was given ids
        self._ids: list[int] = []
        self._sent = 0  # characters of the stripped text already passed to sink

    def put(self, value: torch.Tensor) -> None:
        if self._skip_next:
            self._skip_next = False
            return
        self._ids.extend(int(i) for i in value.reshape(-1).tolist())
        text = str(self.lm.tokenizer.decode(self._ids, skip_special_tokens=True)).lstrip()
        ready = text.rstrip("\ufffd")
        ready = ready.rstrip() if ready == text else ready  # whitespace is held only at the very end
        if len(ready) > self._sent:
            self.sink(ready[self._sent :])
            self._sent = len(ready)

    def end(self) -> None:
        text = str(self.lm.tokenizer.decode(self._ids, skip_special_tokens=True)).strip()
        if len(text) > self._sent:
            self.sink(text[self._sent :])
            self._sent = len(text)


@torch.inference_mode()
def generate_ids(
    lm: LanguageModel, prompt: list[int], gen: GenerationConfig, prefix: torch.Tensor | None = None
) -> str:
    """Greedy decoding from `prompt` ids; stops at end-of-sequence (and the chat end-of-turn token).

    A `prefix` (L, d) is prepended to the prompt's embeddings once; later steps see it through the
    KV cache (RECIPE §1.4).
    """
    if lm.engine is not None:  # a serving engine decodes (it sends the whole answer at once)
        text = lm.engine.complete(lm, prompt, gen.max_new_tokens, gen.min_new_tokens, prefix)
        if gen.on_text and text:
            gen.on_text(text)
        return text
    input_ids = torch.tensor([prompt], device=lm.device)  # (1, T)
    model: Any = lm.model  # generate() is untyped in transformers
    inputs: dict[str, torch.Tensor] = {"input_ids": input_ids}
    if prefix is not None:
        embeds, _ = embed_right(lm, [prompt], [prefix])  # (1, L + T, d)
        inputs = {"inputs_embeds": embeds}
    stream = TextStream(lm, gen.on_text, prompt_first=prefix is None) if gen.on_text else None
    output = model.generate(
        **inputs,
        attention_mask=torch.ones(inputs[next(iter(inputs))].shape[:2], dtype=torch.long, device=lm.device),
        max_new_tokens=gen.max_new_tokens,
        min_new_tokens=gen.min_new_tokens or None,
        do_sample=False,
        eos_token_id=stop_ids(lm),
        pad_token_id=lm.tokenizer.pad_token_id,
        streamer=stream,
    )
    # With input_ids the output repeats the prompt; with inputs_embeds it holds only new tokens.
    new_tokens = output[0, input_ids.shape[1] :] if prefix is None else output[0]
    text = str(lm.tokenizer.decode(new_tokens, skip_special_tokens=True))
    return text.strip()


@torch.inference_mode()
def generate_batch(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    gens: Sequence[GenerationConfig],
    prefixes: Sequence[torch.Tensor | None] | None = None,
    batch_size: int = 16,
) -> list[str]:
    """`generate_ids` for many prompts at once: greedy answers in prompt order, each within its own
    `max_new_tokens` and stopped at its own end token, exactly as one by one (same argmax; the batched
    matmuls round differently, ~1e-5 in the logits).

    Where the model allows (`decoding.decodable`), prompts that share a prefix and a stem are prefilled
    once (recall/lm/decoding.py). Otherwise rows are left padded (the attention mask hides the padding;
    generate() numbers positions from it), longest prompts first so a batch pads little, and decoded
    together: each step reads the weights once for `batch_size` rows instead of once per row, where a
    CPU spends most of a short answer.
    No streaming (`on_text`), no min_new_tokens difference between rows; a serving engine decodes one
    by one."""
    _check_batchable("generate_batch", gens)
    each: Sequence[torch.Tensor | None] = prefixes or [None] * len(prompts)
    if lm.engine is not None:
        return [generate_ids(lm, p, g, x) for p, g, x in zip(prompts, gens, each, strict=True)]
    if decodable(lm):  # shared prefixes and stems prefilled once (recall/lm/decoding.py)
        budgets = [g.max_new_tokens for g in gens]
        return decode_packed(
            lm, prompts, budgets, prefixes, batch_size, gens[0].min_new_tokens if gens else 0
        )
    widths = [len(p) + (0 if x is None else len(x)) for p, x in zip(prompts, each, strict=True)]
    order = sorted(range(len(prompts)), key=lambda i: -widths[i])
    texts: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        row_prefixes = None if prefixes is None else [prefixes[i] for i in rows]
        answers = _decode_rows(lm, [prompts[i] for i in rows], [gens[i] for i in rows], row_prefixes)
        texts.update(zip(rows, answers, strict=True))
    return [texts[i] for i in range(len(prompts))]


def score_and_generate(
    lm: LanguageModel,
    items: Sequence[tuple[list[int], list[int]]],
    prompts: Sequence[list[int]],
    gens: Sequence[GenerationConfig],
    batch_size: int = 16,
    prefixes: tuple[Sequence[Prefix], Sequence[Prefix]] | None = None,
) -> tuple[list[TargetScore], list[str]]:
    """`score_ids(items)` and `generate_batch(prompts)` together: where the model is `decodable`, one
    packed pass scores the items and prefills the prompts (recall/lm/decoding.py `score_and_decode`:
    an evaluation asks the questions it scores, so their prefill comes free); otherwise the two calls.
    `prefixes`: (one per item, one per prompt), or None for none."""
    _check_batchable("score_and_generate", gens)
    if not items or not prompts or lm.engine is not None or not decodable(lm):
        return (
            score_ids(lm, items, batch_size, None if prefixes is None else prefixes[0]) if items else [],
            generate_batch(lm, prompts, gens, None if prefixes is None else prefixes[1], batch_size)
            if prompts
            else [],
        )
    budgets = [g.max_new_tokens for g in gens]
    return score_and_decode(lm, items, prompts, budgets, batch_size, prefixes, gens[0].min_new_tokens)


def _check_batchable(call: str, gens: Sequence[GenerationConfig]) -> None:
    """Rows decoded together stream nothing and share one min_new_tokens."""
    if any(g.on_text is not None for g in gens) or len({g.min_new_tokens for g in gens}) > 1:
        raise ValueError(f"{call} streams nothing and needs one min_new_tokens for every row")


def _decode_rows(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    gens: Sequence[GenerationConfig],
    prefixes: Sequence[torch.Tensor | None] | None,
) -> list[str]:
    """One left-padded generate() call; each row's new tokens cut at its budget and first end token."""
    model: Any = lm.model
    embed: Any = model.get_input_embeddings()
    pad = int(lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0)
    if prefixes is None or all(p is None for p in prefixes):
        width = max(len(p) for p in prompts)
        inputs: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)
        }
        lengths = [len(p) for p in prompts]
    else:
        rows = []
        for prompt, prefix in zip(prompts, prefixes, strict=True):
            tokens = embed(torch.tensor(prompt, device=lm.device))  # (T, d)
            rows.append(tokens if prefix is None else torch.cat([prefix.to(tokens), tokens]))
        width = max(len(r) for r in rows)
        inputs = {
            "inputs_embeds": torch.stack(
                [torch.nn.functional.pad(r, (0, 0, width - len(r), 0)) for r in rows]
            )
        }
        lengths = [len(r) for r in rows]
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=lm.device)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = 1
    stops = stop_ids(lm)
    output = model.generate(
        **inputs,
        attention_mask=mask,
        max_new_tokens=max(g.max_new_tokens for g in gens),
        min_new_tokens=gens[0].min_new_tokens or None,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=pad,
    )
    # With input_ids the output repeats the (padded) prompts; with inputs_embeds it holds only new tokens.
    new = output[:, width:] if "input_ids" in inputs else output
    answers = []
    for row, gen in enumerate(gens):
        tokens = new[row, : gen.max_new_tokens].tolist()
        end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
        answers.append(str(lm.tokenizer.decode(tokens[:end], skip_special_tokens=True)).strip())
    return answers
