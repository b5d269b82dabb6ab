"""Context prefixes (METHODS.md §5.1): short texts the model itself writes after a few starter words.
Keys are averaged over the prompt with and without them, and δ is trained on all of them, so an edit
holds in contexts other than the bare prompt. They are sampled once from the base model with a fixed
seed and then stored with the memory (the backend writes them): a replay on another device or version
uses the same prefixes, so its deltas are the same."""

from __future__ import annotations

from typing import Any

import torch

from recall.lm.loading import LanguageModel

STARTERS = ("The", "Therefore", "Because", "I", "You")  # MEMIT's starters


@torch.no_grad()
def sample_prefixes(lm: LanguageModel, count: int, tokens: int, seed: int = 0) -> list[str]:
    """`count` prefixes of `tokens` sampled tokens each (top-5, as ROME samples them), one starter after
    another; braces removed, as the reference code does (they would break a str.format template)."""
    model: Any = lm.model
    generator = torch.Generator().manual_seed(seed)
    prefixes = []
    for index in range(count):
        starter = STARTERS[index % len(STARTERS)]
        ids = lm.tokenizer(starter, add_special_tokens=False).input_ids
        for _ in range(tokens):
            logits = model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, -1].float().cpu()
            top = logits.topk(5)
            choice = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)
            ids.append(int(top.indices[choice]))
        text = str(lm.tokenizer.decode(ids, skip_special_tokens=True))
        prefixes.append(" ".join(text.replace("{", " ").replace("}", " ").split()))
    return prefixes


def with_prefix(prefix: str, prompt: str) -> str:
    """The prompt after a context prefix ("" is the bare prompt)."""
    return f"{prefix}. {prompt}" if prefix else prompt
