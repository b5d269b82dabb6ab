"""Several targets after one prompt, scored in one row: the prompt is computed once.

An evaluation scores many (prompt, target) pairs that share their prompt: the edit prompt with the new
and with the true answer (CounterFact ES), each rephrase with both (PS), each locality question with its
answer and with the new target (NS). A packed row is [prefix; prompt; target_1; ...; target_k]: each
target's tokens see the prefix, the prompt and their own earlier tokens only (a 4D attention mask), at
the positions they would have in a row of their own (position ids), so their logits are those of the
unpacked run (SmolLM2-135M: max |Δlogit| 0.0) at the cost of one prompt instead of k.

The mask replaces the model's own: packing is used only where that mask is all the model needs
(`packable`): no sliding-window layer narrower than the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from recall.lm.loading import LanguageModel

Prefix = torch.Tensor | None  # one continuous prompt (L, d) before the prompt's tokens (RECIPE), or None


@dataclass(slots=True)
class Group:
    """One prompt (and prefix) and every target scored after it: (item index, target ids)."""

    prompt: list[int]
    prefix: Prefix
    targets: list[tuple[int, list[int]]] = field(default_factory=list)

    @property
    def shared(self) -> int:
        """Positions before the first target: prefix vectors and prompt tokens."""
        return (0 if self.prefix is None else len(self.prefix)) + len(self.prompt)

    @property
    def length(self) -> int:
        return self.shared + sum(len(t) for _, t in self.targets)


def group_items(
    items: Sequence[tuple[list[int], list[int]]], prefixes: Sequence[Prefix] | None
) -> list[Group]:
    """Items with equal prompt ids and equal prefixes (by value) in one group each, in first-seen order."""
    groups: dict[tuple[Any, ...], Group] = {}
    for index, (prompt, target) in enumerate(items):
        prefix = None if prefixes is None else prefixes[index]
        # By value: a backend builds a new prefix tensor per request (RECIPE concatenates its prompts).
        key = (
            tuple(prompt),
            None if prefix is None else (tuple(prefix.shape), prefix.cpu().numpy().tobytes()),
        )
        groups.setdefault(key, Group(prompt, prefix)).targets.append((index, target))
    return list(groups.values())


def packable(lm: LanguageModel, width: int) -> bool:
    """Whether a row of `width` positions may be run with a 4D mask of our own: the mask skips the
    model's sliding windows (Gemma 3: 512), harmless only when the row is no wider than the window."""
    window = getattr(lm.model.config, "sliding_window", None)
    return window is None or width <= int(window)


def _layout(group: Group) -> tuple[list[int], list[int], list[int]]:
    """(segment per position: 0 shared, k for target k; position id per position; the row positions whose
    logits predict each target token, targets in group order)."""
    segments = [0] * group.shared
    positions = list(range(group.shared))
    predicting: list[int] = []
    for k, (_, target) in enumerate(group.targets, start=1):
        start = len(segments)
        segments += [k] * len(target)
        positions += range(group.shared, group.shared + len(target))
        # The last shared position predicts every target's first token; its own tokens the rest.
        predicting += [group.shared - 1, *range(start, start + len(target) - 1)]
    return segments, positions, predicting


def packed_states(lm: LanguageModel, groups: Sequence[Group]) -> tuple[torch.Tensor, list[int]]:
    """(final hidden states (sum of target lengths, d) at the positions predicting each target token, the
    item index of each target in that order); the caller applies the LM head.

    One forward over the groups, one row each, right padded; rows with a prefix go in as embeddings
    (all rows then, as recall/lm/scoring.py does), otherwise as token ids."""
    layouts = [_layout(g) for g in groups]
    width = max(g.length for g in groups)
    segments = torch.full((len(groups), width), -1, dtype=torch.long)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    for row, (segment, position, _) in enumerate(layouts):
        segments[row, : len(segment)] = torch.tensor(segment)
        positions[row, : len(position)] = torch.tensor(position)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    visible = (segments[:, None, :] == 0) | (segments[:, None, :] == segments[:, :, None])
    mask = causal & visible & (segments[:, None, :] >= 0)  # (B, W, W): query i sees key j
    mask[:, :, 0] |= segments < 0  # padding queries see one key, so no row of the softmax is empty
    decoder: Any = lm.model.base_model
    sequences = [g.prompt + [t for _, target in g.targets for t in target] for g in groups]
    device = lm.device
    kwargs: dict[str, Any] = {
        "attention_mask": mask[:, None].to(device),
        "position_ids": positions.to(device),
    }
    if all(g.prefix is None for g in groups):
        pad = int(lm.tokenizer.pad_token_id or 0)
        ids = torch.full((len(groups), width), pad, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
        hidden = decoder(input_ids=ids.to(device), **kwargs).last_hidden_state
    else:
        embed: Any = lm.model.get_input_embeddings()
        rows = []
        for group, sequence in zip(groups, sequences, strict=True):
            tokens = embed(torch.tensor(sequence, device=device))  # (T, d)
            rows.append(tokens if group.prefix is None else torch.cat([group.prefix.to(tokens), tokens]))
        embeds = torch.stack([torch.nn.functional.pad(r, (0, 0, 0, width - len(r))) for r in rows])
        hidden = decoder(inputs_embeds=embeds, **kwargs).last_hidden_state
    rows_index = [row for row, (_, _, predicting) in enumerate(layouts) for _ in predicting]
    cols_index = [col for _, _, predicting in layouts for col in predicting]
    order = [index for g in groups for index, _ in g.targets]
    return hidden[rows_index, cols_index], order
