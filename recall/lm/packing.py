"""Many (prompt, target) pairs in few rows: a prefix and the prompt tokens they share computed once.

An evaluation scores many (prompt, target) pairs that share a beginning. The pairs of one RECIPE prefix
(the admitted edit's prompts) ask its edit prompt, each rephrase and each portability question, every
prompt opens with the chat template's system turn, and CounterFact's ES/PS/NS score two targets after
one prompt. A packed row is a small tree:

    [prefix; stem; prompt_1 rest; target_1a; target_1b; prompt_2 rest; target_2a; ...]

where the stem is the prompt ids every prompt of the row starts with. Each prompt's own tokens see the
prefix, the stem and themselves; each target's tokens see those and their own earlier tokens (a 4D
attention mask), at the positions they would have in a row of their own (position ids), so their logits
are those of the unpacked run (SmolLM2-135M: max |Δlogit| ~1e-5, every argmax equal) at the cost of one
prefix and stem per row instead of one per pair. A row holds branches up to ROW_WIDTH positions; the
rest of a group goes to further rows that repeat the prefix and stem.

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
# Positions a row takes before its next branch opens another row: attention over a row costs its width
# squared, and rows of a batch pad to the widest (Gemma 3's sliding window is 512).
ROW_WIDTH = 512


@dataclass(slots=True)
class Branch:
    """One prompt's ids after its row's stem (at least one), and every target scored after it:
    (item index, target ids)."""

    prompt: list[int]
    targets: list[tuple[int, list[int]]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.prompt) + sum(len(t) for _, t in self.targets)


@dataclass(slots=True)
class Group:
    """One packed row: a prefix, the stem its prompts share, then each prompt's rest and its targets."""

    prefix: Prefix
    stem: list[int]
    branches: list[Branch] = field(default_factory=list)

    @property
    def shared(self) -> int:
        """Positions every branch sees: prefix vectors and stem tokens."""
        return (0 if self.prefix is None else len(self.prefix)) + len(self.stem)

    @property
    def length(self) -> int:
        return self.shared + sum(b.length for b in self.branches)

    @property
    def items(self) -> list[int]:
        """The item index of each target, in row order."""
        return [index for branch in self.branches for index, _ in branch.targets]


def group_items(
    items: Sequence[tuple[list[int], list[int]]],
    prefixes: Sequence[Prefix] | None,
    width: int = ROW_WIDTH,
    branches: int | None = None,
) -> list[Group]:
    """Items with equal prefixes (by value) share rows, items with equal prompt ids a branch, in
    first-seen order; a row's branches fill it up to `width` positions (one branch always goes in) and,
    when given, up to `branches` branches."""
    buckets: dict[Any, tuple[Prefix, dict[tuple[int, ...], list[tuple[int, list[int]]]]]] = {}
    for index, (prompt, target) in enumerate(items):
        prefix = None if prefixes is None else prefixes[index]
        # By value: a backend builds a new prefix tensor per request (RECIPE concatenates its prompts).
        key = None if prefix is None else (tuple(prefix.shape), prefix.cpu().numpy().tobytes())
        prompts = buckets.setdefault(key, (prefix, {}))[1]
        prompts.setdefault(tuple(prompt), []).append((index, target))
    groups: list[Group] = []
    for prefix, prompts in buckets.values():
        stem = _stem_length(list(prompts))
        rows: list[Group] = []
        for ids, targets in prompts.items():
            branch = Branch(list(ids[stem:]), targets)
            if (
                not rows
                or rows[-1].length + branch.length > width
                or (branches is not None and len(rows[-1].branches) >= branches)
            ):
                rows.append(Group(prefix, list(ids[:stem])))
            rows[-1].branches.append(branch)
        groups += rows
    return groups


def _stem_length(prompts: Sequence[tuple[int, ...]]) -> int:
    """How many leading ids every prompt shares, leaving each at least one of its own (its last token
    predicts its targets' first)."""
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def packable(lm: LanguageModel, width: int) -> bool:
    """Whether a row of `width` positions may be run with a 4D mask of our own: the mask skips the
    model's sliding windows (Gemma 3: 512), harmless only when the row is no wider than the window."""
    window = getattr(lm.model.config, "sliding_window", None)
    return window is None or width <= int(window)


@dataclass(slots=True)
class _Layout:
    """Per position of a row: its branch (0: shared), its target within the branch (0: the branch's
    prompt), its position id; the positions whose logits predict each target token, in row order; and
    per target the positions of the prompt it follows (prefix, stem and its branch's prompt). An empty
    target (a prompt to answer, not to score) predicts nothing: it only names its prompt's context."""

    branch: list[int]
    target: list[int]
    positions: list[int]
    predicting: list[int]
    contexts: list[list[int]]


def _layout(group: Group) -> _Layout:
    shared = group.shared
    out = _Layout([0] * shared, [0] * shared, list(range(shared)), [], [])
    for b, branch in enumerate(group.branches, start=1):
        context = [*range(shared), *range(len(out.positions), len(out.positions) + len(branch.prompt))]
        out.branch += [b] * len(branch.prompt)
        out.target += [0] * len(branch.prompt)
        out.positions += range(shared, shared + len(branch.prompt))
        # The branch's last prompt position predicts every target's first token; its own tokens the rest.
        last = len(out.positions) - 1 if branch.prompt else shared - 1
        after = shared + len(branch.prompt)
        for k, (_, target) in enumerate(branch.targets, start=1):
            start = len(out.positions)
            out.branch += [b] * len(target)
            out.target += [k] * len(target)
            out.positions += range(after, after + len(target))
            if target:
                out.predicting += [last, *range(start, start + len(target) - 1)]
            out.contexts.append(context)
    return out


def _mask(layouts: Sequence[_Layout], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention mask (B, W, W): query i sees key j, position ids (B, W)) of right-padded rows."""
    branch = torch.full((len(layouts), width), -1, dtype=torch.long)
    target = torch.zeros((len(layouts), width), dtype=torch.long)
    positions = torch.zeros((len(layouts), width), dtype=torch.long)
    for row, layout in enumerate(layouts):
        n = len(layout.branch)
        branch[row, :n] = torch.tensor(layout.branch)
        target[row, :n] = torch.tensor(layout.target)
        positions[row, :n] = torch.tensor(layout.positions)
    key_branch, query_branch = branch[:, None, :], branch[:, :, None]
    own = (key_branch == query_branch) & (
        (target[:, None, :] == 0) | (target[:, None, :] == target[:, :, None])
    )
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    mask = causal & ((key_branch == 0) | own) & (key_branch >= 0)
    mask[:, :, 0] |= branch < 0  # padding queries see one key, so no row of the softmax is empty
    return mask, positions


@dataclass(frozen=True, slots=True)
class Prefill:
    """What decoding needs of the prompts to answer (items with an empty target) after a packed forward:
    per item (in `order`) the final hidden state at its last prompt position (n, d), its row, and the row
    positions of its prompt; the model's cache over the packed rows."""

    hidden: torch.Tensor
    order: list[int]
    rows: list[int]
    contexts: list[list[int]]
    cache: Any

    def part(self, members: Sequence[int]) -> Prefill:
        """The prompts at `members` (indices into `order`), over the same cache."""
        index = list(members)
        return Prefill(
            self.hidden[index],
            [self.order[i] for i in index],
            [self.rows[i] for i in index],
            [self.contexts[i] for i in index],
            self.cache,
        )


@dataclass(frozen=True, slots=True)
class Pass:
    """One packed forward: final hidden states (sum of target lengths, d) at the positions predicting
    each scored target's tokens and the item index of each scored target in that order; and the prompts
    to answer (items with an empty target: none, with no cache, when the cache was not kept)."""

    states: torch.Tensor
    scored: list[int]
    prefill: Prefill


def packed_pass(lm: LanguageModel, groups: Sequence[Group], keep_cache: bool = False) -> Pass:
    """One forward over `groups`: the states that score their non-empty targets (the caller applies
    the LM head) and, with `keep_cache`, the Prefill from which their empty targets' prompts decode."""
    layouts = [_layout(g) for g in groups]
    hidden, cache = _forward(lm, groups, layouts, use_cache=keep_cache)
    rows_index = [row for row, layout in enumerate(layouts) for _ in layout.predicting]
    cols_index = [col for layout in layouts for col in layout.predicting]
    states = hidden[rows_index, cols_index]
    targets = [(row, t) for row, g in enumerate(groups) for b in g.branches for t in b.targets]
    contexts = [context for layout in layouts for context in layout.contexts]
    scored = [index for _, (index, target) in targets if target]
    # the prompts to answer: only with the cache they decode from
    asked = [k for k, (_, (_, target)) in enumerate(targets) if keep_cache and not target]
    rows = [targets[k][0] for k in asked]
    asked_contexts = [contexts[k] for k in asked]
    last = hidden[rows, [context[-1] for context in asked_contexts]]  # (n, d)
    prefill = Prefill(last, [targets[k][1][0] for k in asked], rows, asked_contexts, cache)
    return Pass(states, scored, prefill)


def _forward(
    lm: LanguageModel, groups: Sequence[Group], layouts: Sequence[_Layout], use_cache: bool
) -> tuple[torch.Tensor, Any]:
    """(final hidden states (B, W, d), the cache or None): one forward over the groups, one row each,
    right padded; rows with a prefix go in as embeddings (all rows then, as recall/lm/scoring.py does),
    otherwise as token ids."""
    width = max(g.length for g in groups)
    mask, positions = _mask(layouts, width)
    decoder: Any = lm.model.base_model
    sequences = [
        g.stem + [t for b in g.branches for t in b.prompt + [x for _, target in b.targets for x in target]]
        for g in groups
    ]
    device = lm.device
    kwargs: dict[str, Any] = {
        "attention_mask": mask[:, None].to(device),
        "position_ids": positions.to(device),
        "use_cache": use_cache,
    }
    if all(g.prefix is None for g in groups):
        pad = int(lm.tokenizer.pad_token_id or 0)
        ids = torch.full((len(groups), width), pad, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
        out = decoder(input_ids=ids.to(device), **kwargs)
    else:
        embed: Any = lm.model.get_input_embeddings()
        rows = []
        for group, sequence in zip(groups, sequences, strict=True):
            tokens = embed(torch.tensor(sequence, device=device))  # (T, d)
            rows.append(tokens if group.prefix is None else torch.cat([group.prefix.to(tokens), tokens]))
        embeds = torch.stack([torch.nn.functional.pad(r, (0, 0, 0, width - len(r))) for r in rows])
        out = decoder(inputs_embeds=embeds, **kwargs)
    return out.last_hidden_state, (out.cache if use_cache else None)
