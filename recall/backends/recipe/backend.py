"""RecipeConfig + RecipeBackend: each admitted edit becomes L_p continuous prompt vectors prepended to the
frozen LLM's input embeddings (RECIPE, METHODS.md §1.2-1.4). The store searches with the same knowledge
model's keys and queries, gated by its learned sentinel (recall/backends/recipe/files.py). With a relevance
probe, the frozen model reads an admitted edit as text beside the question and may decline it
(recall/backends/review.py)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from memory_store import EditRecord, SearchHit
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
from recall.backends.recipe.encoder import load_recipe_encoder
from recall.backends.recipe.files import (
    WEIGHTS_FILE,
    edit_token_ids,
    fact_prompts,
    load_knowledge,
    resolve_knowledge,
)
from recall.backends.recipe.model import KnowledgeModel
from recall.backends.review import load_probe, probe_digest, review_hits
from recall.backends.state_files import read_state, tensors_sha256, write_state
from recall.digests import file_sha256
from recall.errors import ConfigError
from recall.lm.generation import generate_batch, generate_ids, score_and_generate
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import prompt_ids, score_ids, target_ids
from recall.results import TargetScore

logger = logging.getLogger(__name__)

PROMPTS_FILE = "recipe_prompts.safetensors"
# Statements per knowledge-model pass when making prompts: bounds the encoder's batch memory.
_PROMPT_BATCH = 64


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
    # The edit's own tokens in its prompt (after the learned vectors): the knowledge model was trained
    # on its first `statement_tokens` (64); a long answer cut there came back cut. None: the whole
    # exchange (a prompt then costs its length in every ask that admits it); 0 or N: the artifact's cap.
    text_tokens: int | None = None
    # A second knowledge model whose prompt head makes the prompts of long edits: those whose exchange
    # has more tokens than `checkpoint` read in training (its `statement_tokens`, 64). recipe-smollm2-
    # 135m-long went on from recipe-smollm2-135m on long answers with the retriever frozen
    # (configs/train/recipe_longform.yaml): UnKEBench paraphrases Rouge-L 77.8 -> 94.2, but ZsRE T=100
    # Gen 93.6 -> 88.9 if it made every prompt, hence the split. None: `checkpoint` for every edit.
    long_checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.max_prompts < 1:
            raise ConfigError(f"backend.max_prompts must be >= 1, got {self.max_prompts!r}")


class RecipeBackend(RetrievalBackend):
    """Continuous prompts before the question; no hit means exactly the base model's prompt and output.

    The prompt of an edit is a pure function of its record, so `_prompts` is a cache: `sync` fills it
    for the store's active edits on open, and a hit it lacks (an edit another process made) is computed
    when first injected."""

    name: ClassVar[str] = "recipe"
    config_class: ClassVar[type[BackendConfig]] = RecipeConfig
    capabilities: ClassVar[Capability] = (
        RetrievalBackend.capabilities | Capability.REVIEW | Capability.TRAINABLE | Capability.PROMPT_EMBEDS
    )
    # A knowledge model made for the tiny llama (tests/conftest.py), its own margin, no review: the
    # preset's probe and margin belong to the shipped SmolLM2 model.
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        "backend.checkpoint": "{tiny_recipe_dir}",
        "backend.long_checkpoint": None,
        "encoder.name": "{tiny_recipe_dir}",
        "backend.relevance": None,
        "sentinel.margin": None,
    }
    load_encoder = staticmethod(load_recipe_encoder)  # the store searches with the knowledge model

    def __init__(self, config: RecipeConfig, lm: LanguageModel) -> None:
        if not config.checkpoint:
            raise ConfigError(
                "backend.checkpoint must name a RECIPE knowledge model (e.g. recipe-smollm2-135m, which "
                "--backend recipe selects); `python -m training recipe` trains one"
            )
        self.config = config
        self.lm = lm
        self.knowledge = load_knowledge(config.checkpoint, lm)
        self.long = load_knowledge(config.long_checkpoint, lm) if config.long_checkpoint else None
        if self.long is not None and not self.knowledge.settings.statement_tokens:
            raise ConfigError(
                "backend.long_checkpoint needs a checkpoint that reads an edit's tokens; "
                f"{config.checkpoint!r} reads none (statement_tokens 0): no edit is longer than its training"
            )
        hidden = int(lm.model.config.hidden_size)
        for name, knowledge in ((config.checkpoint, self.knowledge), (config.long_checkpoint, self.long)):
            if knowledge is not None and knowledge.settings.llm_hidden != hidden:
                raise ConfigError(
                    f"RECIPE model {name!r} makes prompts of width {knowledge.settings.llm_hidden}, but "
                    f"{lm.model_id} has hidden size {hidden}"
                )
        self._prompts: dict[str, torch.Tensor] = {}  # edit_id -> (L_p, d)
        self._digests: dict[str, str] = {}  # edit_id -> prompt_digest(statement, prompt)
        self.probe = load_probe(config.relevance, lm) if config.relevance else None

    def edit(self, records: Sequence[EditRecord]) -> None:
        """One knowledge-model pass per batch: statement -> r_k -> MLP_P -> prompt."""
        if records:
            makers = self._makers(records)
            prompts = self._make_prompts(records, makers)
            for record, maker, prompt in zip(records, makers, prompts, strict=True):
                self._prompts[record.edit_id] = prompt
                self._digests[record.edit_id] = prompt_digest(self._bound(record, maker), prompt)

    def forget(self, edit_ids: Sequence[str]) -> None:
        for edit_id in edit_ids:
            self._prompts.pop(edit_id, None)
            self._digests.pop(edit_id, None)

    def sync(self, active: Sequence[EditRecord]) -> None:
        """Keep the cached prompts of the active edits whose digest still matches their statement, make
        the missing ones, drop the rest (an altered or swapped cache entry is remade, never used)."""
        cached = [r for r in active if r.edit_id in self._prompts]
        kept = {
            r.edit_id
            for r, maker in zip(cached, self._makers(cached), strict=True)
            if self._digests.get(r.edit_id) == prompt_digest(self._bound(r, maker), self._prompts[r.edit_id])
        }
        if len(kept) < len(cached):
            logger.warning(
                "the RECIPE prompt cache holds prompts that do not match their edits; remaking them"
            )
        self._prompts = {k: v for k, v in self._prompts.items() if k in kept}
        self._digests = {k: v for k, v in self._digests.items() if k in kept}
        self.edit([r for r in active if r.edit_id not in kept])

    def clear(self) -> None:
        self._prompts.clear()
        self._digests.clear()

    def describe(self) -> dict[str, str]:
        # Hashed here, when a report stamps it, not on every open (13 MB for the shipped model).
        weights = resolve_knowledge(str(self.config.checkpoint)) / WEIGHTS_FILE
        out = {
            "artifact": Path(str(self.config.checkpoint)).name,
            "checkpoint_sha256": file_sha256(weights)[:16],
        }
        if self.config.long_checkpoint:
            long_weights = resolve_knowledge(self.config.long_checkpoint) / WEIGHTS_FILE
            out["long_artifact"] = Path(self.config.long_checkpoint).name
            out["long_checkpoint_sha256"] = file_sha256(long_weights)[:16]
        if self.config.relevance:
            out["relevance"] = probe_digest(self.config.relevance)
        return out

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        # Atomic and fsynced: a crash keeps the previous cache, and `sync` refills what it lacks.
        write_state(path / PROMPTS_FILE, self._prompts, {k: self._digests[k] for k in self._prompts})

    def load(self, path: Path) -> None:
        """Read the prompt cache; a missing one is fine (prompts are recomputed from the statements)."""
        file = path / PROMPTS_FILE
        state = read_state(file) if file.is_file() else None  # None: `sync` remakes every prompt
        # Each prompt's digest of its statement is checked against the store's records by `sync`.
        self._prompts, self._digests = state if state is not None else ({}, {})

    @property
    def reviews(self) -> bool:
        return self.probe is not None

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
        used = list(self._live(hits)[: self.config.max_prompts])
        if not used:
            return None
        self.edit([h.record for h in used if h.record.edit_id not in self._prompts])  # cache misses
        return torch.cat([self._prompts[h.record.edit_id] for h in used]).to(self.lm.device)

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        used = self._live(hits)[: self.config.max_prompts]
        ids = prompt_ids(self.lm, self._render(prompt))
        text = generate_ids(self.lm, ids, gen, self.prefix(used))
        return self._generations([text], [used])[0]

    def generate_many(
        self, prompts: Sequence[str], hits: Sequence[Sequence[SearchHit]], gens: Sequence[GenerationConfig]
    ) -> list[Generation]:
        used = [self._live(h)[: self.config.max_prompts] for h in hits]
        ids = [prompt_ids(self.lm, self._render(p)) for p in prompts]
        prefixes = [self.prefix(u) for u in used]
        texts = generate_batch(self.lm, ids, gens, prefixes, self.config.batch_size)
        return self._generations(texts, used)

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        requests = [ScoreRequest(r.prompt, r.target, self._live(r.hits)) for r in requests]
        items = self._items(requests)
        size = self.config.batch_size
        return score_by_hits(
            requests,
            lambda rows: score_ids(
                self.lm, [items[i] for i in rows], size, [self.prefix(requests[i].hits) for i in rows]
            ),
            # Prompts without hits take the plain token path: exactly the base model's scores.
            lambda rows: score_ids(self.lm, [items[i] for i in rows], size),
        )

    def score_and_generate_many(
        self,
        requests: Sequence[ScoreRequest],
        prompts: Sequence[str],
        hits: Sequence[Sequence[SearchHit]],
        gens: Sequence[GenerationConfig],
    ) -> tuple[list[TargetScore], list[Generation]]:
        requests = [ScoreRequest(r.prompt, r.target, self._live(r.hits)) for r in requests]
        used = [self._live(h)[: self.config.max_prompts] for h in hits]
        items = self._items(requests)
        ids = [prompt_ids(self.lm, self._render(p)) for p in prompts]

        def route(rows: list[int], asks: list[int], with_hits: bool) -> tuple[list[TargetScore], list[str]]:
            prefixes = (
                ([self.prefix(requests[i].hits) for i in rows], [self.prefix(used[j]) for j in asks])
                if with_hits
                else None  # the plain token path, as score_many
            )
            picked = [items[i] for i in rows]
            asked = [ids[j] for j in asks]
            return score_and_generate(
                self.lm, picked, asked, [gens[j] for j in asks], self.config.batch_size, prefixes
            )

        scores, texts = score_and_generate_by_hits(
            [bool(r.hits) for r in requests], [bool(u) for u in used], route
        )
        return scores, self._generations(texts, used)

    def _items(self, requests: Sequence[ScoreRequest]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, target ids) of each request, as score_many scores them."""
        raw = not (self.config.use_chat_template and self.lm.has_chat_template)
        return [
            (prompt_ids(self.lm, self._render(r.prompt)), target_ids(self.lm, r.target, leading_space=raw))
            for r in requests
        ]

    def _render(self, question: str) -> str:
        return render(self.lm, question, use_chat_template=self.config.use_chat_template)

    def _bound(self, record: EditRecord, maker: KnowledgeModel) -> str:
        """What a cached prompt is bound to: its edit's statement, how many of its tokens it holds and
        which model made it (a prompt made under another `text_tokens` or `long_checkpoint` is remade)."""
        name = self.config.long_checkpoint if maker is self.long else self.config.checkpoint
        return f"{self._text_limit(maker)}|{name}|{record.statement}"

    def _text_limit(self, knowledge: KnowledgeModel) -> int | None:
        """How many of an edit's tokens its prompt holds (None: all): an artifact that feeds none (0)
        keeps feeding none; else `text_tokens`, or the artifact's cap when set to 0."""
        trained = knowledge.settings.statement_tokens
        if trained == 0 or self.config.text_tokens == 0:
            return trained
        return self.config.text_tokens

    def _makers(self, records: Sequence[EditRecord]) -> list[KnowledgeModel]:
        """The knowledge model that makes each edit's prompt: `long_checkpoint`'s for an edit longer than
        `checkpoint` read in training, else `checkpoint`'s (one tokenizer pass for all of them)."""
        if self.long is None:
            return [self.knowledge] * len(records)
        cap = self.knowledge.settings.statement_tokens
        ids = edit_token_ids(self.knowledge, self.lm, [(r.prompt, r.target) for r in records])
        return [self.long if len(row) > cap else self.knowledge for row in ids]

    @torch.inference_mode()
    def _make_prompts(
        self, records: Sequence[EditRecord], makers: Sequence[KnowledgeModel] | None = None
    ) -> list[torch.Tensor]:
        """Each edit's prompt from its maker (`_makers`, unless given), in order, `_PROMPT_BATCH` edits a
        pass."""
        makers = self._makers(records) if makers is None else makers
        out: dict[int, torch.Tensor] = {}
        for knowledge in dict.fromkeys(makers):
            chosen = [i for i, maker in enumerate(makers) if maker is knowledge]
            for start in range(0, len(chosen), _PROMPT_BATCH):
                part = chosen[start : start + _PROMPT_BATCH]
                facts = [(records[i].prompt, records[i].target) for i in part]
                prompts = fact_prompts(knowledge, self.lm, facts, limit=self._text_limit(knowledge))
                out.update((i, p.float().cpu()) for i, p in zip(part, prompts, strict=True))
        return [out[i] for i in range(len(records))]


def prompt_digest(statement: str, prompt: torch.Tensor) -> str:
    """sha256 of an edit's statement and its prompt's tensors: what binds a cached prompt to its edit."""
    return hashlib.sha256(f"{statement}|{tensors_sha256({'prompt': prompt})}".encode()).hexdigest()
