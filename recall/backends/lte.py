"""LteConfig + LteBackend: admitted edits become a textual prefix (LTE §2.1) for a frozen LLM, or for the
LLM with an alignment adapter; with a relevance probe, the model itself declines admitted edits it
would not use (recall/backends/review.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from memory_store import SearchHit
from recall.backends.base import (
    BackendConfig,
    Capability,
    Generation,
    GenerationConfig,
    RetrievalBackend,
    ScoreRequest,
    score_and_generate_by_hits,
    score_by_hits,
)
from recall.backends.review import load_probe, probe_digest, review_hits
from recall.errors import ConfigError
from recall.lm.generation import generate_batch, generate_ids, score_and_generate
from recall.lm.loading import LanguageModel
from recall.lm.lora import adapter_template, load_adapted
from recall.lm.prompts import Fact, TemplateName, prompt_text, statement
from recall.lm.scoring import prompt_ids, score_ids, target_ids
from recall.results import TargetScore


@dataclass(frozen=True)
class LteConfig(BackendConfig):
    """Knobs of the lte backend (no model path, no device: those are not method settings)."""

    name: str = "lte"
    template: TemplateName = "lte"
    use_chat_template: bool = True
    max_facts: int = 3  # at most this many admitted statements go into the prefix
    batch_size: int = 16  # teacher-forced scoring batch
    # LoRA adapter from `python -m training lte` (a bundled name or a directory); None = frozen model.
    # It serves only prompts that carry admitted edits: without one the base model answers.
    adapter: str | None = None
    # Relevance probe from `python -m training relevance` (a bundled name or a directory), fit on the
    # model that answers with edits: it declines an admitted edit that model would not use. None = off.
    relevance: str | None = None

    def __post_init__(self) -> None:
        if self.max_facts < 1:
            raise ConfigError(f"backend.max_facts must be >= 1, got {self.max_facts!r}")


class LteBackend(RetrievalBackend):
    """Retrieved statements as text before the question; no hit means exactly the base prompt."""

    name: ClassVar[str] = "lte"
    config_class: ClassVar[type[BackendConfig]] = LteConfig
    capabilities: ClassVar[Capability] = RetrievalBackend.capabilities | Capability.REVIEW
    # The shipped adapter and probe belong to SmolLM2: the tiny llama runs the frozen-model form.
    tiny_settings: ClassVar[Mapping[str, Any]] = {"backend.adapter": None, "backend.relevance": None}

    def __init__(self, config: LteConfig, lm: LanguageModel) -> None:
        trained = adapter_template(config.adapter) if config.adapter else None
        if trained is not None and trained != config.template:
            # The adapter learned to read one form of prompt; another one silently loses most edits.
            raise ConfigError(
                f"adapter {config.adapter!r} was trained with template {trained!r}, but backend.template is "
                f"{config.template!r}: set backend.template={trained}"
            )
        self.config = config
        self.lm = lm  # the base model: answers every prompt without admitted edits
        self.adapted_lm = load_adapted(lm, config.adapter) if config.adapter else lm
        self.probe = load_probe(config.relevance, self.adapted_lm) if config.relevance else None
        if self.probe is not None and self.probe.template != config.template:
            raise ConfigError(
                f"relevance probe {config.relevance!r} reads prompts in template {self.probe.template!r}, "
                f"but backend.template is {config.template!r}"
            )

    # The store holds the statements; a text-prefix backend keeps no state of its own (RetrievalBackend).

    def describe(self) -> dict[str, str]:
        out: dict[str, str] = {"template": self.config.template}
        if self.config.adapter:
            out["artifact"] = Path(self.config.adapter).name
            out["adapter"] = self.adapted_lm.fingerprint
        if self.probe is not None and self.config.relevance:
            out["relevance"] = probe_digest(self.config.relevance)
        return out

    @property
    def reviews(self) -> bool:
        return self.probe is not None

    def review(
        self, queries: Sequence[str], admitted: Sequence[Sequence[SearchHit]]
    ) -> list[tuple[SearchHit, ...]]:
        """Each query's admitted hits less those the relevance probe declines (all kept without a probe).
        One prompt per (query, hit), rendered with that edit alone, read by the model that would answer."""
        return review_hits(self.adapted_lm, self.probe, queries, admitted)

    def injected(self, hits: Sequence[SearchHit]) -> str:
        """The statements of the edits this backend would put before a question ("" for none)."""
        return "\n".join(statement(p, t) for p, t in self._facts(hits))

    def prompt_text(self, question: str, hits: Sequence[SearchHit]) -> str:
        return prompt_text(
            self.lm,
            question,
            self._facts(hits),
            self.config.template,
            use_chat_template=self.config.use_chat_template,
        )

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        used = self._live(hits)[: self.config.max_facts]
        ids = prompt_ids(self.lm, self.prompt_text(prompt, used))
        lm = self.adapted_lm if used else self.lm
        text = generate_ids(lm, ids, gen)
        return self._generations([text], [used])[0]

    def generate_many(
        self, prompts: Sequence[str], hits: Sequence[Sequence[SearchHit]], gens: Sequence[GenerationConfig]
    ) -> list[Generation]:
        used = [self._live(h)[: self.config.max_facts] for h in hits]
        ids = [prompt_ids(self.lm, self.prompt_text(p, u)) for p, u in zip(prompts, used, strict=True)]
        texts: dict[int, str] = {}
        # Prompts with facts go to the adapted model, the rest to the base model (as `generate` does).
        for lm, rows in (
            (self.adapted_lm, [i for i, u in enumerate(used) if u]),
            (self.lm, [i for i, u in enumerate(used) if not u]),
        ):
            if rows:
                answers = generate_batch(
                    lm, [ids[i] for i in rows], [gens[i] for i in rows], None, self.config.batch_size
                )
                texts.update(zip(rows, answers, strict=True))
        return self._generations([texts[i] for i in range(len(used))], used)

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        requests = [ScoreRequest(r.prompt, r.target, self._live(r.hits)) for r in requests]
        items = self._items(requests)
        if self.adapted_lm is self.lm:
            return score_ids(self.lm, items, self.config.batch_size)
        # With an adapter, prompts with edits and prompts without go to different weights.
        return score_by_hits(
            requests,
            lambda rows: score_ids(self.adapted_lm, [items[i] for i in rows], self.config.batch_size),
            lambda rows: score_ids(self.lm, [items[i] for i in rows], self.config.batch_size),
        )

    def score_and_generate_many(
        self,
        requests: Sequence[ScoreRequest],
        prompts: Sequence[str],
        hits: Sequence[Sequence[SearchHit]],
        gens: Sequence[GenerationConfig],
    ) -> tuple[list[TargetScore], list[Generation]]:
        requests = [ScoreRequest(r.prompt, r.target, self._live(r.hits)) for r in requests]
        used = [self._live(h)[: self.config.max_facts] for h in hits]
        items = self._items(requests)
        ids = [prompt_ids(self.lm, self.prompt_text(p, u)) for p, u in zip(prompts, used, strict=True)]

        def route(rows: list[int], asks: list[int], with_hits: bool) -> tuple[list[TargetScore], list[str]]:
            # with edits, the adapted model (as score_many and generate do); without, the base model
            lm = self.adapted_lm if with_hits else self.lm
            picked, asked = [items[i] for i in rows], [ids[j] for j in asks]
            return score_and_generate(lm, picked, asked, [gens[j] for j in asks], self.config.batch_size)

        scores, texts = score_and_generate_by_hits(
            [bool(r.hits) for r in requests], [bool(u) for u in used], route
        )
        return scores, self._generations(texts, used)

    def _items(self, requests: Sequence[ScoreRequest]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids with the hits' facts, target ids) of each request, as score_many scores them."""
        raw = not (self.config.use_chat_template and self.lm.has_chat_template)
        return [
            (
                prompt_ids(self.lm, self.prompt_text(r.prompt, r.hits)),
                target_ids(self.lm, r.target, leading_space=raw),
            )
            for r in requests
        ]

    def _facts(self, hits: Sequence[SearchHit]) -> list[Fact]:
        return [(hit.record.prompt, hit.record.target) for hit in hits[: self.config.max_facts]]
