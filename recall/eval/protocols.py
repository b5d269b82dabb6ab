"""Editing protocols (single, batch, sequential) over an MemoryInterface, producing an EvalResult.

Every protocol first records the base model's teacher-forced predictions on all locality pairs, before any
edit exists, because locality is agreement with the *unedited* model (METHODS 6.2). Edits are added with
policy "keep_both": benchmarks never supersede, and two cases about one subject must both stay stored.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm import tqdm

from recall.datasets.cases import EvalCase, locality_names_edited, shared_subjects
from recall.errors import ConfigError, RecallError
from recall.eval.probes import CaseRow, probe_cases, score_pairs
from recall.eval.settings import EvalSettings
from recall.eval.summary import Summary, subset_summaries, summarize
from recall.interface import MemoryInterface
from recall.results import Edit, TargetScore

logger = logging.getLogger(__name__)


# Cases scored per score_many call in the test phase. A call sorts its rows by length and packs targets
# that share a prompt (recall/lm/scoring.py); more rows pad less: recipe on zsRE's first 40, 13% of the
# positions run were padding at 64 cases a call, 31% at 16. Small enough that the progress bar moves.
_TEST_CHUNK = 64


@dataclass(frozen=True, slots=True)
class EvalResult:
    """A finished run: the summary (see summary.SUMMARY_KEYS), one row per case, phase timings, and the
    summaries of case subsets (summary.SUBSETS; empty when no subset is worth telling apart)."""

    summary: Summary
    rows: tuple[CaseRow, ...]
    settings: EvalSettings
    timings_s: dict[str, float] = field(default_factory=dict)
    subsets: dict[str, Summary] = field(default_factory=dict)


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _edit(case: EvalCase, namespace: str) -> Edit:
    return Edit(prompt=case.prompt, target=case.target, subject=case.subject, namespace=namespace)


class _Run:
    """State of one run: the memory, the cases, the pre-edit locality scores, and the rows so far."""

    def __init__(
        self, memory: MemoryInterface, cases: Sequence[EvalCase], settings: EvalSettings, progress: bool
    ):
        self.memory = memory
        self.cases = cases
        self.settings = settings
        self.progress = progress
        # The cases tested, by index: all of them, or settings.test_sample evenly spaced (sequential).
        self.tested = sample_indices(len(cases), settings.test_sample)
        self.base_locality: list[tuple[TargetScore, ...]] = []  # per tested case
        self.rows: list[CaseRow] = []
        self.timings_s = {"base": 0.0, "edit": 0.0, "test": 0.0}
        # Per case: another case in memory beside it edits its subject with another target
        self.shared = self._per_memory(shared_subjects)
        # Per case: a locality prompt names the subject of an edit in memory beside it
        self.loc_edited = self._per_memory(locality_names_edited)

    def _per_memory(self, flags: Callable[[Sequence[EvalCase]], list[bool | None]]) -> list[bool | None]:
        """`flags` of the cases over the edits in memory together: sequential keeps every edit together;
        single and batch keep one chunk at a time."""
        if self.settings.protocol == "sequential":
            return flags(self.cases)
        return [flag for _, chunk in _chunks(self.cases, self.settings.batch_size) for flag in flags(chunk)]

    def record_base_locality(self) -> None:
        """Teacher-forced use_memory=False scores of every locality pair, taken before the first edit."""
        start = time.perf_counter()
        tested = [self.cases[i] for i in self.tested]
        bar = tqdm(total=len(tested), desc="base locality", unit="case", disable=not self.progress)
        with bar:
            for _, chunk in _chunks(tested, _TEST_CHUNK):
                pairs = [pair for case in chunk for pair in case.locality]
                scores = iter(score_pairs(self.memory, pairs, self.settings.namespace, use_memory=False))
                self.base_locality.extend(tuple(next(scores) for _ in case.locality) for case in chunk)
                bar.update(len(chunk))
        self.timings_s["base"] += time.perf_counter() - start

    def add(self, chunk: Sequence[EvalCase]) -> tuple[list[str], list[float]]:
        """Add a chunk of edits (add for one, add_many for more); returns edit ids and ms per edit."""
        start = time.perf_counter()
        if self.settings.batch_size == 1:
            (case,) = chunk
            results = [
                self.memory.add(
                    case.prompt, case.target, case.subject, self.settings.namespace, policy="keep_both"
                )
            ]
        else:
            edits = [_edit(case, self.settings.namespace) for case in chunk]
            results = self.memory.add_many(edits, policy="keep_both")
        elapsed = time.perf_counter() - start
        self.timings_s["edit"] += elapsed
        if len(results) != len(chunk):
            raise RecallError(f"add_many returned {len(results)} results for {len(chunk)} edits")
        return [r.edit_id for r in results], [elapsed * 1000.0 / len(chunk)] * len(chunk)

    def test(
        self, offset: int, chunk: Sequence[EvalCase], edit_ids: Sequence[str], latencies: Sequence[float]
    ) -> None:
        """Test `chunk`, the tested cases from position `offset` of self.tested on."""
        start = time.perf_counter()
        base = self.base_locality[offset : offset + len(chunk)]
        rows = probe_cases(self.memory, chunk, edit_ids, latencies, base, self.settings)
        tested = self.tested[offset : offset + len(chunk)]
        self.rows.extend(
            dataclasses.replace(r, shared_subject=self.shared[i], loc_names_edited=self.loc_edited[i])
            for r, i in zip(rows, tested, strict=True)
        )
        self.timings_s["test"] += time.perf_counter() - start

    def bar(self, desc: str) -> tqdm[Any]:
        return tqdm(total=len(self.cases), desc=desc, unit="case", disable=not self.progress)


def _run_chunked(run: _Run, size: int) -> None:
    """single and batch: add a chunk, test it, reset, so chunks never see each other's edits."""
    with run.bar(f"{run.settings.protocol} edit+test") as bar:
        for offset, chunk in _chunks(run.cases, size):
            edit_ids, latencies = run.add(chunk)
            run.test(offset, chunk, edit_ids, latencies)
            run.memory.reset()
            bar.update(len(chunk))


def sample_indices(total: int, sample: int | None) -> list[int]:
    """`sample` indices spread evenly over range(total), first and last included (all for None or
    a sample of total or more)."""
    if sample is None or sample >= total:
        return list(range(total))
    if sample == 1:
        return [0]
    return sorted({round(i * (total - 1) / (sample - 1)) for i in range(sample)})


def _run_sequential(run: _Run) -> None:
    """Add every edit without resetting, then test every case (or the sampled ones) against the final
    memory."""
    edit_ids: list[str] = []
    latencies: list[float] = []
    with run.bar("sequential edit") as bar:
        for _, chunk in _chunks(run.cases, run.settings.batch_size):
            ids, times = run.add(chunk)
            edit_ids += ids
            latencies += times
            bar.update(len(chunk))
    with tqdm(total=len(run.tested), desc="sequential test", unit="case", disable=not run.progress) as bar:
        for offset, positions in _chunks(run.tested, _TEST_CHUNK):
            chunk = [run.cases[i] for i in positions]
            run.test(offset, chunk, [edit_ids[i] for i in positions], [latencies[i] for i in positions])
            bar.update(len(chunk))
    run.memory.reset()


def run_protocol(
    memory: MemoryInterface, cases: Sequence[EvalCase], settings: EvalSettings, progress: bool = True
) -> EvalResult:
    """Run one protocol over `cases` and score every case.

    The memory is reset before the run (so edits left from earlier use cannot leak into the numbers) and
    after it; pass a memory made for the evaluation.

    Args:
        memory: an EditMemory, or anything with the MemoryInterface methods.
        cases: the cases, in the order the edits are made.
        settings: protocol, batch size, what to measure.
        progress: show tqdm bars on stderr.
    """
    cases = list(cases if settings.n is None else cases[: settings.n])
    if not cases:
        raise ConfigError("no cases to evaluate")
    logger.info(
        "evaluating %d cases, protocol %s, batch size %d", len(cases), settings.protocol, settings.batch_size
    )
    run = _Run(memory, cases, settings, progress)
    memory.reset()
    run.record_base_locality()
    if settings.protocol == "sequential":
        _run_sequential(run)
    else:
        _run_chunked(run, settings.batch_size)
    timings = dict(run.timings_s, total=sum(run.timings_s.values()))
    return EvalResult(
        summary=summarize(run.rows),
        rows=tuple(run.rows),
        settings=settings,
        timings_s=timings,
        subsets=subset_summaries(run.rows),
    )
