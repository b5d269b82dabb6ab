"""Keys and values read at one token of many sequences (METHODS.md §5.1, §5.3): the inputs of the
edited MLP output projections (MEMIT's K at each layer) and a decoder layer's output (its residual
stream: MEMIT's current z), in one batched forward pass without gradients.

A key is averaged the way MEMIT's compute_ks averages it: over the context prefixes, then with the bare
prompt's (two groups of equal weight), so the bare prompt counts as much as all prefixes together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from recall.lm.hooks import StopForward, forward_hook, resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.scoring import pad_right


@torch.no_grad()
def read_at(
    lm: LanguageModel,
    rows: Sequence[tuple[list[int], int]],
    inputs_of: Sequence[str] = (),
    outputs_of: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """For rows (token ids, position): each module in `inputs_of`'s input and each in `outputs_of`'s
    output at the row's position, (B, d) float32 on the CPU, by module path (an input and an output of
    one path are not asked together). The pass stops once every module has been read."""
    ids, mask = pad_right([r[0] for r in rows], int(lm.tokenizer.pad_token_id or 0))
    at = (torch.arange(len(rows)), torch.tensor([r[1] for r in rows]))
    seen: dict[str, torch.Tensor] = {}

    def reader(path: str, read_input: bool) -> Any:
        def hook(_m: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            value = inputs[0] if read_input else output
            seen[path] = value[at[0].to(value.device), at[1].to(value.device)].float().cpu()
            if len(seen) == len(inputs_of) + len(outputs_of):
                raise StopForward  # the layers above are not needed

        return hook

    with contextlib.ExitStack() as hooks:
        for path in inputs_of:
            hooks.enter_context(forward_hook(resolve_module(lm.model, path), reader(path, True)))
        for path in outputs_of:
            hooks.enter_context(forward_hook(resolve_module(lm.model, path), reader(path, False)))
        with contextlib.suppress(StopForward):
            lm.model.base_model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device))
    return seen


def group_mean(values: torch.Tensor, groups: int) -> torch.Tensor:
    """(n * groups, d) rows, each record's `groups` rows together (the bare prompt first, then its
    prefixed copies) -> (n, d): the mean of the bare row and the mean of the prefixed ones."""
    grouped = values.reshape(-1, groups, values.shape[-1])  # (n, groups, d)
    if groups == 1:
        return grouped[:, 0]
    return (grouped[:, 0] + grouped[:, 1:].mean(1)) / 2
