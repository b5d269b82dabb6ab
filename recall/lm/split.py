"""Optimising something placed at one token of several sequences (a GRACE value, ROME's δ): what comes
before that token, and every layer below the edited one, do not change from step to step, so they run
once.

Why (SmolLM2-135M on one CPU thread: a step over a few tokens is bound by reading weights):
- the tokens every rendered prompt starts with (a chat template's system turn) run once per process
  (`StemCache`); each row's tokens before its cut run once, in one pass with the first step (left padded,
  explicit positions, so a row computes what it would alone), and their KV cache is kept;
- the layers below the edited one run once too (`skip_layers_below`): a step reads the weights from the
  edited layer up, over the tokens from the cut on.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from recall.lm.hooks import decoder_layers, forward_hook, resolve_module, skip_layers_below
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import prompt_ids


class StemCache:
    """The KV cache of the tokens every rendered prompt starts with (a chat template's system turn), made
    once: an optimisation then runs only what differs between prompts."""

    def __init__(self, lm: LanguageModel, stem: Sequence[int]) -> None:
        self.lm, self.stem = lm, list(stem)
        self._cache: Any = None

    def shared(self, prompts: Sequence[list[int]]) -> tuple[int, Any]:
        """(s, a fresh cache of the first s tokens, batch 1, or None when s == 0): the longest part of the
        stem that every prompt starts with."""
        s = len(self.stem)
        for prompt in prompts:
            s = min(s, len(prompt))
            s = next((i for i in range(s) if self.stem[i] != prompt[i]), s)
        if s == 0:
            return 0, None
        if self._cache is None:
            with torch.no_grad():
                ids = torch.tensor([self.stem], device=self.lm.device)
                self._cache = self.lm.model(input_ids=ids, use_cache=True).cache
        cache = copy.deepcopy(self._cache)
        cache.crop(s - len(self.stem))  # a negative count: drop the stem's last tokens (0: none)
        return s, cache


class SplitPass:
    """Rows of token ids, each cut at one position (the token where something is placed). The first pass
    runs every row whole (no gradients) and records, at each row's cut, the input (B, d_in) and output
    (B, d_out) of the module at `module_path` in decoder layer `layer`, and the final hidden states at
    `reads`: (row, offset from the cut) pairs. Inside `steps()`, `run()` runs only the tokens from the cut
    on, from `layer` up, and returns the final hidden states at `reads` (n, d), with gradients.

    A forward hook on the module places things at `at`: (B,) rows, each at its cut (position 0 of a step).
    """

    def __init__(
        self,
        lm: LanguageModel,
        module_path: str,
        layer: int,
        rows: Sequence[tuple[list[int], int]],
        reads: Sequence[tuple[int, int]],
        stem: StemCache | None = None,
    ) -> None:
        self.lm, self.layer = lm, layer
        model, device = lm.model, lm.device
        pad = int(lm.tokenizer.pad_token_id or 0)
        count = len(rows)
        s, cache = stem.shared([ids[:cut] for ids, cut in rows]) if stem is not None else (0, None)
        middles = [ids[s:cut] for ids, cut in rows]
        rests = [ids[cut:] for ids, cut in rows]
        width, rest_width = max(len(m) for m in middles), max(len(r) for r in rests)
        ids_, mask, positions = [], [], []
        for middle, rest in zip(middles, rests, strict=True):
            lead, tail = width - len(middle), rest_width - len(rest)
            ids_.append([pad] * lead + middle + rest + [pad] * tail)
            mask.append([0] * lead + [1] * (len(middle) + len(rest)) + [0] * tail)
            positions.append([s] * lead + list(range(s, s + len(middle) + rest_width)))
        self._ids = torch.tensor(ids_, device=device)  # (B, W + R)
        self._mask = torch.tensor([[1] * s + m for m in mask], device=device)  # (B, s + W + R)
        self._positions = torch.tensor(positions, device=device)
        self._width = width
        if cache is not None:
            cache.batch_repeat_interleave(count)
        self.read_rows = torch.tensor([r for r, _ in reads], dtype=torch.long, device=device)
        self.read_cols = torch.tensor([c for _, c in reads], dtype=torch.long, device=device)
        batch = torch.arange(count, device=device)
        self.at = (batch, torch.zeros(count, dtype=torch.long, device=device))
        first_at = (batch, torch.full((count,), width, device=device))

        self.module = resolve_module(model, module_path)
        seen: dict[str, Any] = {}

        def capture(_m: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            seen["key"] = inputs[0][first_at].detach().clone()
            seen["out"] = output[first_at].detach().clone()

        def capture_below(_m: torch.nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
            seen["below"] = output[:, width:]  # (B, R, d): what steps replay

        below = forward_hook(decoder_layers(model)[layer - 1], capture_below) if layer > 0 else None
        with torch.no_grad(), forward_hook(self.module, capture), below or contextlib.nullcontext():
            out = model.base_model(
                input_ids=self._ids,
                attention_mask=self._mask,
                position_ids=self._positions,
                cache=cache,
                use_cache=True,
            )
        self.key: torch.Tensor = seen["key"]  # (B, d_in)
        self.out: torch.Tensor = seen["out"]  # (B, d_out)
        self.first: torch.Tensor = out.last_hidden_state[self.read_rows, self.read_cols + width]  # (n, d)
        self._below: Any = seen.get("below")
        self._cache = out.cache
        self._cache.crop(-rest_width)  # keep the stem and the middles: a step runs the rest

    @contextlib.contextmanager
    def steps(self) -> Iterator[None]:
        """While inside, `run()` may be called: the layers below `layer` replay the first pass."""
        replay = (
            skip_layers_below(self.lm.model, self.layer, self._below) if self._below is not None else None
        )
        with replay or contextlib.nullcontext():
            yield

    def run(self) -> torch.Tensor:
        """Final hidden states (n, d) at `reads`, the tokens from each cut on run again."""
        hidden = self.lm.model.base_model(
            input_ids=self._ids[:, self._width :],
            attention_mask=self._mask,
            position_ids=self._positions[:, self._width :],
            cache=copy.deepcopy(
                self._cache
            ),  # a step appends its tokens (with their graph): a fresh copy each
            use_cache=True,
        ).last_hidden_state
        picked: torch.Tensor = hidden[self.read_rows, self.read_cols]
        return picked


def common_stem(lm: LanguageModel, *, use_chat_template: bool) -> list[int]:
    """The token ids every rendered prompt starts with (a chat template's system turn; [] without one)."""
    first, second = (
        prompt_ids(lm, render(lm, q, use_chat_template=use_chat_template)) for q in ("Who?", "What is it?")
    )
    return [a for a, _ in itertools.takewhile(lambda p: p[0] == p[1], zip(first, second, strict=False))]
