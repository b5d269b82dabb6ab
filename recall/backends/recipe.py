"""RecipeConfig + RecipeBackend: each admitted edit becomes L_p continuous prompt vectors prepended to the
frozen LLM's input embeddings (RECIPE, METHODS.md §1.2-1.4). The store searches with the same knowledge
model's keys and queries, gated by its learned sentinel (recall/knowledge_files.py). With a relevance
probe, the frozen model reads an admitted edit as text beside the question and may decline it
(recall/relevance.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from memory_store import EditRecord, SearchHit
from memory_store.errors import CorruptStoreError
from recall.backends.base import Capability, Generation, GenerationConfig, ScoreRequest, score_by_hits
from recall.config import BackendConfig
from recall.errors import ConfigError
from recall.knowledge_files import fact_prompts, load_knowledge
from recall.models import LanguageModel
from recall.prompts import render
from recall.relevance import load_probe, review_hits
from recall.results import TargetScore
from recall.scoring import generate_ids, prompt_ids, score_ids, target_ids

PROMPTS_FILE = "recipe_prompts.safetensors"


@dataclass(frozen=True)
class RecipeConfig(BackendConfig):
    """Knobs of the recipe backend."""

    name: str = "recipe"
    # The trained knowledge model (`python -m training recipe`): a bundled name or a directory.
    checkpoint: str | None = None
    use_chat_template: bool = True
    max_prompts: int = 1  # RECIPE admits the top-1 edit; more admitted edits concatenate their prompts
    batch_size: int = 16  # teacher-forced scoring batch
    # Relevance probe fit on the frozen model (`python -m training relevance --config
    # configs/train/relevance.yaml`; a bundled name or a directory): it declines an admitted edit the
    # model, reading it as an earlier exchange, would not use. None = off.
    relevance: str | None = None

    def __post_init__(self) -> None:
        if self.max_prompts < 1:
            raise ConfigError(f"backend.max_prompts must be >= 1, got {self.max_prompts!r}")


class RecipeBackend:
    """Continuous prompts before the question; no hit means exactly the base model's prompt and output."""

    name: ClassVar[str] = "recipe"
    capabilities: ClassVar[Capability] = (
        Capability.FORGET | Capability.BATCH | Capability.USES_RETRIEVAL | Capability.TRAINABLE
    )

    def __init__(self, config: RecipeConfig, lm: LanguageModel) -> None:
        if not config.checkpoint:
            raise ConfigError(
                "backend.checkpoint must name a RECIPE knowledge model (e.g. recipe-smollm2-135m, which "
                "--backend recipe selects); `python -m training recipe` trains one"
            )
        self.config = config
        self.lm = lm
        self.knowledge = load_knowledge(config.checkpoint, lm)
        hidden = int(lm.model.config.hidden_size)
        if self.knowledge.settings.llm_hidden != hidden:
            raise ConfigError(
                f"RECIPE model {config.checkpoint!r} makes prompts of width "
                f"{self.knowledge.settings.llm_hidden}, but {lm.model_id} has hidden size {hidden}"
            )
        self._prompts: dict[str, torch.Tensor] = {}  # edit_id -> (L_p, d)
        self.probe = load_probe(config.relevance, lm) if config.relevance else None

    @classmethod
    def create(cls, config: RecipeConfig, lm: LanguageModel) -> RecipeBackend:
        return cls(config, lm)

    def edit(self, records: Sequence[EditRecord]) -> None:
        """One knowledge-model pass per batch: statement -> r_k -> MLP_P -> prompt."""
        if records:
            prompts = self._make_prompts(records)
            self._prompts.update({r.edit_id: p for r, p in zip(records, prompts, strict=True)})

    def forget(self, edit_ids: Sequence[str]) -> None:
        for edit_id in edit_ids:
            self._prompts.pop(edit_id, None)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{PROMPTS_FILE}.tmp"
        save_file({k: v.contiguous() for k, v in self._prompts.items()}, str(tmp))
        tmp.replace(path / PROMPTS_FILE)  # atomic: a crash keeps the previous cache

    def load(self, path: Path) -> None:
        """Read the prompt cache; a missing one is fine (prompts are recomputed from the statements)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        file = path / PROMPTS_FILE
        if not file.is_file():
            return
        try:
            self._prompts = dict(load_file(str(file)))
        except (SafetensorError, OSError) as exc:
            raise CorruptStoreError(f"cannot read the RECIPE prompt cache {str(file)!r}: {exc}") from exc

    def review(
        self, queries: Sequence[str], admitted: Sequence[Sequence[SearchHit]]
    ) -> list[tuple[SearchHit, ...]]:
        """Each query's admitted hits less those the relevance probe declines (all kept without one)."""
        return review_hits(self.lm, self.probe, queries, admitted)

    def injected(self, hits: Sequence[SearchHit]) -> str:
        """What went in, in words: the edits whose prompt vectors were prepended ("" for none)."""
        used = hits[: self.config.max_prompts]
        settings = self.knowledge.settings
        what = f"{settings.prompt_tokens} prompt vectors" + (" + tokens" if settings.statement_tokens else "")
        return "\n".join(f"[{what} of] {hit.record.statement}" for hit in used)

    def prefix(self, hits: Sequence[SearchHit]) -> torch.Tensor | None:
        """(n * L_p, d): the admitted edits' prompts in rank order, or None without hits."""
        used = list(hits[: self.config.max_prompts])
        if not used:
            return None
        missing = [h.record for h in used if h.record.edit_id not in self._prompts]
        self.edit(missing)  # an edit made by another process, or before a cache was saved
        return torch.cat([self._prompts[h.record.edit_id] for h in used]).to(self.lm.device)

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        ids = prompt_ids(self.lm, self._render(prompt))
        text = generate_ids(self.lm, ids, gen.max_new_tokens, gen.min_new_tokens, self.prefix(hits))
        return Generation(text, self.injected(hits))

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        raw = not (self.config.use_chat_template and self.lm.has_chat_template)
        items = [
            (prompt_ids(self.lm, self._render(r.prompt)), target_ids(self.lm, r.target, leading_space=raw))
            for r in requests
        ]
        size = self.config.batch_size
        return score_by_hits(
            requests,
            lambda rows: score_ids(
                self.lm, [items[i] for i in rows], size, [self.prefix(requests[i].hits) for i in rows]
            ),
            # Prompts without hits take the plain token path: exactly the base model's scores.
            lambda rows: score_ids(self.lm, [items[i] for i in rows], size),
        )

    def _render(self, question: str) -> str:
        return render(self.lm, question, use_chat_template=self.config.use_chat_template)

    @torch.inference_mode()
    def _make_prompts(self, records: Sequence[EditRecord]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in range(0, len(records), 64):
            facts = [(r.prompt, r.target) for r in records[start : start + 64]]
            out.extend(p.float().cpu() for p in fact_prompts(self.knowledge, self.lm, facts))
        return out
