"""The EditBackend protocol every backend implements, its capabilities and generation settings."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from memory_store import EditRecord, SearchHit
from recall.results import TargetScore


class Capability(enum.Flag):
    """What a backend can do; the facade asks, never checks names."""

    NONE = 0
    FORGET = enum.auto()
    BATCH = enum.auto()
    USES_RETRIEVAL = enum.auto()
    TRAINABLE = enum.auto()


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """Greedy decoding settings for `generate`."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0  # > 0 forces a length (benchmarks compare equal-length answers)


@dataclass(frozen=True, slots=True)
class Generation:
    """A backend's answer and exactly what it injected ("" when it injected nothing)."""

    text: str
    injected: str


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One teacher-forced scoring job: `target` after `prompt`, with these admitted hits."""

    prompt: str
    target: str
    hits: Sequence[SearchHit] = ()


class EditBackend(Protocol):
    """How edits reach the language model. With no hit, output must be exactly the base model's."""

    name: ClassVar[str]
    capabilities: ClassVar[Capability]

    def edit(self, records: Sequence[EditRecord]) -> None: ...

    def forget(self, edit_ids: Sequence[str]) -> None: ...

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation: ...

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


@runtime_checkable
class ReviewsHits(Protocol):
    """A backend that reads each admitted hit beside its query with its own model and may decline it
    (recall/relevance.py). EditMemory asks it after the gate, so what it declines is neither injected
    nor reported as having shaped the answer."""

    def review(
        self, queries: Sequence[str], admitted: Sequence[Sequence[SearchHit]]
    ) -> list[tuple[SearchHit, ...]]: ...


def score_by_hits(
    requests: Sequence[ScoreRequest],
    with_hits: Callable[[list[int]], list[TargetScore]],
    without_hits: Callable[[list[int]], list[TargetScore]],
) -> list[TargetScore]:
    """Score the requests that carry hits and those that do not by two routes (each given the row
    indices it serves), and return the scores in request order. Backends use it so that prompts
    without hits take exactly the base model's path."""
    scores: dict[int, TargetScore] = {}
    for route, hit in ((with_hits, True), (without_hits, False)):
        rows = [i for i, r in enumerate(requests) if bool(r.hits) == hit]
        if rows:
            scores.update(zip(rows, route(rows), strict=True))
    return [scores[i] for i in range(len(requests))]
