"""The EditBackend protocol every backend implements, for retrieval backends (edits reach the model
through the hits the facade retrieves) and in-model backends (edits live in the model: codebooks, weight
deltas) alike; its capabilities, configs and generation settings.

The store is the truth. The facade (recall/memory.py) calls, in this order: `check` before anything is
written; the backend's `edit`/`forget` before the store's write (a refusal or failure leaves both as they
were); `sync(active_records)` on open and after a failure, so a crash between the two writes is repaired
on the next open; `save` on close.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from memory_store import EditRecord, SearchHit
from recall.lm.decoding_config import (
    GenerationConfig as GenerationConfig,  # re-exported: part of the protocol
)
from recall.results import TargetScore


class Capability(enum.Flag):
    """What a backend can do; the facade and the contract tests ask, never check names."""

    NONE = 0
    # forget(ids) removes exactly those edits: afterwards the backend is as if they had never been made.
    # Without it, forget and supersede are refused before the store changes (UnsupportedOperationError).
    FORGET = enum.auto()
    BATCH = enum.auto()  # edit() takes many records in one call (add_many is one batch)
    # Reads the hits the facade retrieves and admits; what it injected is the edits it used. Without it
    # the backend gets no hits and decides inside the model which edits apply (GRACE, ROME).
    USES_RETRIEVAL = enum.auto()
    REVIEW = enum.auto()  # review(queries, admitted) may decline admitted hits (recall/backends/review.py)
    # Changes model weights or wraps modules: it must own private copies of what it changes
    # (recall/lm/weights.py), so other memories and `disabled()` see the untouched base model.
    EDITS_WEIGHTS = enum.auto()
    TRAINABLE = enum.auto()  # has a trained artifact (`python -m training ...`)
    # Edits what the model knows about a subject (ROME, MEMIT): an edit must name one that occurs in its
    # prompt; `check` refuses others, and the REPL's guided :edit asks for it as required.
    SUBJECT = enum.auto()
    # Puts edits in front of the question as input embeddings (RECIPE's continuous prompts), not as text:
    # a serving engine must take prompt_embeds for it (recall/lm/engine.py, kind "vllm").
    PROMPT_EMBEDS = enum.auto()

    @property
    def in_model(self) -> bool:
        """Edits live in this process's model (weights, wrapped modules), not only in retrieved hits: an
        answer must not run while one is applied, and a serving engine holding the base weights cannot
        answer with them."""
        return Capability.EDITS_WEIGHTS in self or Capability.USES_RETRIEVAL not in self


@dataclass(frozen=True)
class BackendConfig:
    """Base of every backend's config; `name` selects the backend in the registry."""

    name: str = "recipe"


@dataclass(frozen=True, slots=True)
class Generation:
    """A backend's answer, what it injected in words ("" when nothing) and the ids of the edits that
    shaped it (the provenance every view reports: `Answer.used`, `--why`, the REPL, eval rows)."""

    text: str
    injected: str = ""
    used: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One teacher-forced scoring job: `target` after `prompt`, with these admitted hits (always empty
    for a backend without USES_RETRIEVAL)."""

    prompt: str
    target: str
    hits: Sequence[SearchHit] = ()


class EditBackend(Protocol):
    """How edits reach the language model. Inside `disabled()`, and for a retrieval backend given no
    hit, output must be exactly the base model's."""

    name: ClassVar[str]
    capabilities: ClassVar[Capability]
    config_class: ClassVar[type[BackendConfig]]
    # Overrides (dotted key -> value) that fit the backend to the contract tests' tiny random llama; a
    # value "{fixture}" is replaced by that pytest fixture's value (tests/core/test_contract_*.py).
    tiny_settings: ClassVar[Mapping[str, Any]]

    def check(self, records: Sequence[EditRecord]) -> None:
        """Raise InvalidEditError / UnsupportedOperationError for records this backend cannot take,
        before anything is written."""

    def edit(self, records: Sequence[EditRecord]) -> None: ...

    def forget(self, edit_ids: Sequence[str]) -> None: ...

    def sync(self, active: Sequence[EditRecord]) -> None:
        """Make the backend hold exactly the `active` records (the store's truth)."""

    def clear(self) -> None:
        """Drop every edit: the backend is as if none had been made."""

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation: ...

    def generate_many(
        self, prompts: Sequence[str], hits: Sequence[Sequence[SearchHit]], gens: Sequence[GenerationConfig]
    ) -> list[Generation]:
        """`generate` for each prompt, in order (no streaming): the same answers, decoded together where
        the backend can."""

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]: ...

    def score_and_generate_many(
        self,
        requests: Sequence[ScoreRequest],
        prompts: Sequence[str],
        hits: Sequence[Sequence[SearchHit]],
        gens: Sequence[GenerationConfig],
    ) -> tuple[list[TargetScore], list[Generation]]:
        """`score_many(requests)` and `generate_many(prompts, hits, gens)`: the same scores and answers,
        in one pass where the backend can (an evaluation asks the questions it scores)."""

    def disabled(self) -> contextlib.AbstractContextManager[None]:
        """Inside: generate and score_many run the unedited base model (peft's disable_adapter)."""

    @property
    def reviews(self) -> bool:
        """Whether `review` can decline anything now (a REVIEW backend with its probe loaded)."""

    def review(
        self, queries: Sequence[str], admitted: Sequence[Sequence[SearchHit]]
    ) -> list[tuple[SearchHit, ...]]:
        """Each query's admitted hits less those the backend declines (REVIEW backends)."""

    def describe(self) -> dict[str, str]:
        """What a report stamps: the artifacts and statistics this backend uses, with digests."""

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None:
        """Read saved state from `path` (called on create and on open, before `sync`); a backend may
        keep `path` and write its state there as it changes (GRACE writes each entry before `edit`
        returns)."""


class BackendSwitch:
    """What every backend shares: the `disabled()` switch (a flag its own code reads where it applies
    edits), a `review` that keeps every admitted hit (backends without Capability.REVIEW) and a
    `generate_many` that answers one by one."""

    _disabled = False

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        raise NotImplementedError  # every backend decodes its own way

    def generate_many(
        self, prompts: Sequence[str], hits: Sequence[Sequence[SearchHit]], gens: Sequence[GenerationConfig]
    ) -> list[Generation]:
        """One by one; backends whose rows can share a decoding loop override it (lm.generate_batch)."""
        return [self.generate(p, h, g) for p, h, g in zip(prompts, hits, gens, strict=True)]

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        raise NotImplementedError  # every backend scores its own way

    def score_and_generate_many(
        self,
        requests: Sequence[ScoreRequest],
        prompts: Sequence[str],
        hits: Sequence[Sequence[SearchHit]],
        gens: Sequence[GenerationConfig],
    ) -> tuple[list[TargetScore], list[Generation]]:
        """The two calls; backends whose scoring rows can prefill their answers override it
        (lm.score_and_generate)."""
        return self.score_many(requests), self.generate_many(prompts, hits, gens)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        previous, self._disabled = self._disabled, True
        try:
            yield
        finally:
            self._disabled = previous

    @property
    def reviews(self) -> bool:
        return False

    def review(
        self, queries: Sequence[str], admitted: Sequence[Sequence[SearchHit]]
    ) -> list[tuple[SearchHit, ...]]:
        return [tuple(hits) for hits in admitted]


class RetrievalBackend(BackendSwitch):
    """Shared behaviour of backends that read retrieved hits and leave the model's weights alone: no
    hit is the base model, so `clear()` needs nothing, `disabled()` only drops the hits, and `sync` has
    no state to repair. Subclasses set `name`, `config_class` and implement generate/score_many."""

    capabilities: ClassVar[Capability] = Capability.FORGET | Capability.BATCH | Capability.USES_RETRIEVAL
    tiny_settings: ClassVar[Mapping[str, Any]] = {}

    def check(self, records: Sequence[EditRecord]) -> None:
        return None  # a hit carries the whole record: any valid record can be injected

    def edit(self, records: Sequence[EditRecord]) -> None:
        return None  # the store holds what is injected

    def forget(self, edit_ids: Sequence[str]) -> None:
        return None

    def sync(self, active: Sequence[EditRecord]) -> None:
        return None

    def clear(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {}

    def save(self, path: Path) -> None:
        return None

    def load(self, path: Path) -> None:
        return None

    def _live(self, hits: Sequence[SearchHit]) -> Sequence[SearchHit]:
        """The hits to inject: none inside `disabled()`."""
        return () if self._disabled else hits

    def _generations(self, texts: Sequence[str], used: Sequence[Sequence[SearchHit]]) -> list[Generation]:
        """Each answer with what was injected for it and the ids of the edits it used."""
        return [
            Generation(text, self.injected(u), tuple(h.record.edit_id for h in u))
            for text, u in zip(texts, used, strict=True)
        ]

    def injected(self, hits: Sequence[SearchHit]) -> str:
        raise NotImplementedError  # what each backend puts before a question, in words


# Scores and answers of one route (the requests' row indices, the questions' indices, whether they
# carry hits): recall/lm/generation.py score_and_generate over what that route injects.
ScoreAndGenerate = Callable[[list[int], list[int], bool], tuple[list[TargetScore], list[str]]]


def score_and_generate_by_hits(
    scored: Sequence[bool], asked: Sequence[bool], route: ScoreAndGenerate
) -> tuple[list[TargetScore], list[str]]:
    """`score_by_hits` for scoring and answering together: requests and questions that carry hits
    (`scored`, `asked`) go by one route, the rest by the other (exactly the base model's path), and
    the scores and answers come back in their orders."""
    scores: dict[int, TargetScore] = {}
    texts: dict[int, str] = {}
    for hit in (True, False):
        rows = [i for i, h in enumerate(scored) if h == hit]
        asks = [j for j, h in enumerate(asked) if h == hit]
        if rows or asks:
            found, answers = route(rows, asks, hit)
            scores.update(zip(rows, found, strict=True))
            texts.update(zip(asks, answers, strict=True))
    return [scores[i] for i in range(len(scored))], [texts[j] for j in range(len(asked))]


def score_by_hits(
    requests: Sequence[ScoreRequest],
    with_hits: Callable[[list[int]], list[TargetScore]],
    without_hits: Callable[[list[int]], list[TargetScore]],
) -> list[TargetScore]:
    """Score the requests that carry hits and those that do not by two routes (each given the row
    indices it serves), and return the scores in request order. Backends use it so that prompts
    without hits take exactly the base model's path."""

    def route(rows: list[int], _: list[int], hit: bool) -> tuple[list[TargetScore], list[str]]:
        return (with_hits if hit else without_hits)(rows), []

    return score_and_generate_by_hits([bool(r.hits) for r in requests], [], route)[0]
