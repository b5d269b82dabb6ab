"""The offline corpus second-moment statistics are computed from (METHODS.md §5.1: Wikipedia, which the
reference code reads, is not reachable here). It is the model's own text: `samples` continuations of
`length` tokens, sampled (top-k 40, temperature 1, a fixed seed) after starters from many domains, so
the keys cover what the model writes about people, places, works, science and everyday matters. A
corpus is named by its settings and the model's fingerprint; its digest is over the token ids."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from recall.lm.loading import LanguageModel

STARTERS = (
    "The history of", "In mathematics,", "The city of", "She was born in", "The company announced",
    "According to the report,", "The river", "In the 19th century,", "The album was released",
    "Scientists have found", "The team won", "He is best known for", "The capital of", "The novel",
    "In biology,", "The president said", "During the war,", "The film stars", "The university of",
    "Recipes for", "The language is spoken", "The church was built", "The species is found", "In 2010,",
    "The game", "My favourite", "The law requires", "The museum", "The singer", "Football is",
)  # fmt: skip


@dataclass(frozen=True)
class CorpusSpec:
    """What to sample: `samples` sequences of `length` new tokens each, from `seed`."""

    samples: int = 400
    length: int = 128
    seed: int = 0
    batch: int = 40

    @property
    def name(self) -> str:
        return f"self-samples-{self.samples}x{self.length}-seed{self.seed}"


@torch.no_grad()
def sample_corpus(lm: LanguageModel, spec: CorpusSpec) -> Iterator[list[int]]:
    """The corpus's token sequences (starter + sampled tokens), `spec.batch` at a time."""
    model: Any = lm.model
    generator = torch.Generator().manual_seed(spec.seed)
    eos = lm.tokenizer.eos_token_id
    for start in range(0, spec.samples, spec.batch):
        count = min(spec.batch, spec.samples - start)
        starters = [STARTERS[(start + i) % len(STARTERS)] for i in range(count)]
        seqs = [list(lm.tokenizer(s, add_special_tokens=False).input_ids) for s in starters]
        width = max(len(s) for s in seqs)
        # Left padded, so every row's next token is at the last position.
        ids = torch.tensor([[eos] * (width - len(s)) + s for s in seqs], device=lm.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=lm.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        new: list[torch.Tensor] = []
        for _ in range(spec.length):
            logits = out.logits[:, -1].float().cpu()  # (count, V)
            top = logits.topk(40, dim=-1)
            pick = torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)  # (count, 1)
            token = top.indices.gather(1, pick).to(lm.device)
            new.append(token)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=token, attention_mask=mask, position_ids=positions, cache=out.cache, use_cache=True
            )
        sampled = torch.cat(new, 1).tolist()
        for seq, tail in zip(seqs, sampled, strict=True):
            yield seq + tail


def corpus_digest(sequences: list[list[int]]) -> str:
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(torch.tensor(seq, dtype=torch.int64).numpy().tobytes())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
