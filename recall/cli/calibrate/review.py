"""`recall calibrate --review`: choose a learned sentinel's margin and `retrieval.review_within` for a
backend that reviews admitted edits (the recipe preset), on train or val data, never the evaluation.

One pass makes the cases' edits in a memory whose gate is opened `LOOSE` below the trained cut-off, takes
every hit within that band for a sample of rephrases (in scope) and locality questions (out of scope),
and has the backend's probe score each (question, edit) pair once. Every (margin, window) setting is
then replayed from those numbers as `EditMemory` decides: a hit is admitted when it beats
cos(query, sentinel) + margin; a query whose best hit clears that by `window` or more is used unreviewed;
the others keep the admitted hits the probe scores at or above its threshold. (A question asked word
for word as an edit's skips the gate; a sampled rephrase or locality question almost never is one.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recall.backends.review import load_probe, relevance_scores
from recall.config import load_config
from recall.datasets.loading import FormatName, load_cases
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.retrieval.encoder import Encoder

LOOSE = 0.08  # how far below the trained cut-off hits are collected: the lowest margin replayed
OPEN = -2.0  # the collecting memory's margin: below any cosine, so its own gate admits everything
MARGINS = (0.03, 0.02, 0.01, 0.0, -0.01, -0.02, -0.03, -0.05)  # replayed after the trained margin
WINDOWS: tuple[float | None, ...] = (0.0, 0.05, 0.1, 0.15, None)  # 0: never review; None: always


@dataclass(frozen=True)
class GateQuery:
    """One sampled question: by how much each collected hit beats the trained cut-off (descending) and
    the probe's verdict on it."""

    in_scope: bool
    excess: tuple[float, ...]
    kept: tuple[bool, ...]


@dataclass(frozen=True)
class GridRow:
    shift: float  # the margin replayed, minus the trained one
    window: float | None
    false_reject: float  # share of rephrases with nothing admitted, %
    false_accept: float  # share of locality questions with something admitted, %
    reviewed_in: float  # share of rephrases that went to review, %
    reviewed_out: float


def collect(
    backend: str,
    overrides: Sequence[str],
    data: Path,
    data_format: FormatName,
    n: int,
    sample: int,
    seed: int = 0,
    *,
    lm: LanguageModel | None = None,
    encoder: Encoder | None = None,
    device: str | None = None,
) -> tuple[list[GateQuery], float]:
    """The sampled queries, and the trained margin they are measured against (`lm` and `encoder`
    default to the config's)."""
    config = load_config(backend=backend, overrides=overrides)
    relevance = getattr(config.backend, "relevance", None)
    if config.sentinel.kind != "learned" or not relevance:
        raise ConfigError(
            "recall calibrate --review needs a backend with a learned sentinel and a relevance probe "
            "(e.g. --backend recipe)"
        )
    if config.retrieval.max_gap is not None:
        raise ConfigError("recall calibrate --review does not replay retrieval.max_gap: --set it to null")
    cases = [c for c in load_cases(data, data_format, n) if not c.is_noop]
    rng = random.Random(seed)
    rephrases = [c.rephrases[0] for c in cases if c.rephrases]
    locality = [c.locality[0][0] for c in cases if c.locality]
    rng.shuffle(rephrases)
    rng.shuffle(locality)
    # The memory's own gate and review are off: both are replayed from the numbers taken here.
    loose = load_config(
        backend=backend, overrides=[*overrides, f"sentinel.margin={OPEN}", "backend.relevance=null"]
    )
    with EditMemory.temporary(loose, lm=lm, encoder=encoder, device=device) as memory:
        trained = float(getattr(memory.encoder, "sentinel_margin", 0.0))
        lm = getattr(memory.backend, "lm", None)  # the model the backend answers with (recipe: frozen)
        if lm is None:
            raise ConfigError(
                f"backend {memory.backend.name!r} has no language model of its own to review with"
            )
        probe = load_probe(str(relevance), lm)
        for case in cases:
            memory.add(case.prompt, case.target, case.subject, policy="keep_both")
        rows: list[tuple[bool, str, list[tuple[float, tuple[str, str]]]]] = []
        for in_scope, questions in ((True, rephrases[:sample]), (False, locality[:sample])):
            vectors = memory.encoder.encode_queries(questions)  # (q, dim)
            found = memory.store.search(vectors, k=config.retrieval.top_k, namespace="default")
            for question, vector, hits in zip(questions, vectors, found, strict=True):
                cut = memory.sentinel.threshold(vector) - OPEN + trained  # the trained cut-off
                near = [(h.score - cut, (h.record.prompt, h.record.target)) for h in hits]
                rows.append((in_scope, question, [(e, fact) for e, fact in near if e > -LOOSE]))
        pairs = [(question, fact) for _, question, near in rows for _, fact in near]
        scores = iter(relevance_scores(lm, probe, pairs))
        queries = [
            GateQuery(
                in_scope,
                tuple(e for e, _ in near),
                tuple(next(scores) >= probe.threshold for _ in near),
            )
            for in_scope, _, near in rows
        ]
    return queries, trained


def replay(queries: Sequence[GateQuery], shift: float, window: float | None) -> GridRow:
    """The gate and review rates with the margin `shift` above the trained one (negative: looser)."""
    opened = {True: 0, False: 0}
    reviewed = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for query in queries:
        total[query.in_scope] += 1
        admitted = [(e, kept) for e, kept in zip(query.excess, query.kept, strict=True) if e > shift]
        if not admitted:
            continue
        if window is not None and admitted[0][0] - shift >= window:
            opened[query.in_scope] += 1
            continue
        reviewed[query.in_scope] += 1
        opened[query.in_scope] += any(kept for _, kept in admitted)
    share = {k: 100.0 / max(1, total[k]) for k in total}
    return GridRow(
        shift,
        window,
        false_reject=100.0 - opened[True] * share[True],
        false_accept=opened[False] * share[False],
        reviewed_in=reviewed[True] * share[True],
        reviewed_out=reviewed[False] * share[False],
    )


def run_calibrate_review(
    backend: str,
    overrides: Sequence[str],
    data: Path,
    data_format: FormatName,
    *,
    n: int,
    sample: int,
    device: str = "auto",
) -> int:
    queries, trained = collect(backend, overrides, data, data_format, n, sample, device=device)
    print(
        f"{data.name}: {n} records; {sum(q.in_scope for q in queries)} rephrases, "
        f"{sum(not q.in_scope for q in queries)} locality questions; trained margin {trained:.4f}"
    )
    print("| margin | review_within | false reject % | false accept % | reviewed: rephrases % | locality % |")
    print("|---:|---:|---:|---:|---:|---:|")
    margins = [trained] + [m for m in MARGINS if m > trained - LOOSE and m != trained]
    for margin in margins:
        for window in WINDOWS:
            row = replay(queries, margin - trained, window)
            within = "always" if window is None else ("never" if window == 0 else f"{window:g}")
            print(
                f"| {margin:.4f} | {within} | {row.false_reject:.1f} | {row.false_accept:.1f} "
                f"| {row.reviewed_in:.0f} | {row.reviewed_out:.0f} |"
            )
    print("set them with --set sentinel.margin=M --set retrieval.review_within=W (or in the preset)")
    return 0
