"""`recall calibrate --review`: choose the sentinel's cut-off, `retrieval.review_within` and
`retrieval.subject_margin` for a backend that reviews admitted edits (recipe, lte_aligned), on train or
val data, never the evaluation.

One pass makes the cases' edits in a memory whose gate is open, takes every hit (of retrieval.search_k)
within `LOOSE` below the base cut-off (a learned sentinel's trained margin, a fixed one's min_cosine) for
a sample of rephrases (in scope) and locality questions (out of scope), and has the backend's probe score
each (question, edit) pair once. Every (cut-off, window, subject_margin) setting is then replayed from
those numbers as the gate decides (recall/retrieval/gate.py): a hit is admitted when it beats the cut-off
(cos(query, sentinel) + margin, or min_cosine), plus subject_margin when the question does not name its
subject; a query whose best hit clears that by `window` or more is used unreviewed; the others keep the
admitted hits the probe scores at or above its threshold. A question with several sentences is read as
the view (itself or its last sentence: recall/retrieval/views.py) the gate picks at the config's own
cut-off and subject_margin; the replayed settings keep that view. (A question asked word for word as an edit's
skips the gate; a sampled rephrase or locality question almost never is one. Newer edits overriding
older ones play no part: every sampled edit is added with keep_both.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memory_store import SearchHit
from recall.config import load_config
from recall.datasets.loading import FormatName, load_cases
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.retrieval.encoder import Encoder
from recall.retrieval.subjects import names_edit_subject
from recall.retrieval.views import all_views

LOOSE = 0.3  # how far below the base cut-off hits are collected: the lowest shift replayed
OPEN = -2.0  # the collecting memory's margin: below any cosine, so its own gate admits everything
SHIFTS = (0.02, 0.0, -0.02, -0.05, -0.08, -0.1, -0.12, -0.15, -0.2, -0.25, -0.3)  # around the base cut-off
WINDOWS: tuple[float | None, ...] = (0.0, 0.05, 0.1, 0.15, None)  # 0: never review; None: always
SUBJECT_MARGINS: tuple[float | None, ...] = (None, 0.1, 0.15, 0.2, 0.25, 0.3, 2.0)  # 2: name it or nothing


@dataclass(frozen=True)
class GateQuery:
    """One sampled question: by how much each collected hit beats the base cut-off (descending), the
    probe's verdict on it, whether the question names its subject (recall/retrieval/subjects.py) and
    whether it is the question's own edit (a rephrase's; never for a locality question). Empty `named`
    or `own`: every hit named / none own."""

    in_scope: bool
    excess: tuple[float, ...]
    kept: tuple[bool, ...]
    named: tuple[bool, ...] = ()
    own: tuple[bool, ...] = ()


@dataclass(frozen=True)
class GridRow:
    shift: float  # the cut-off replayed, minus the base one
    window: float | None
    false_reject: float  # share of rephrases with nothing admitted, %
    false_accept: float  # share of locality questions with something admitted, %
    reviewed_in: float  # share of rephrases that went to review, %
    reviewed_out: float
    own_missed: float = 0.0  # share of rephrases whose own edit was not admitted, %


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
    """The sampled queries, and the base cut-off they are measured against: a learned sentinel's trained
    margin, or a fixed sentinel's min_cosine (`lm` and `encoder` default to the config's)."""
    config = load_config(backend=backend, overrides=overrides)
    relevance = getattr(config.backend, "relevance", None)
    if not relevance:
        raise ConfigError(
            "recall calibrate --review needs a backend with a relevance probe (e.g. --backend recipe or "
            "lte_aligned)"
        )
    if config.retrieval.max_gap is not None:
        raise ConfigError("recall calibrate --review does not replay retrieval.max_gap: --set it to null")
    learned = config.sentinel.kind == "learned"
    cases = [c for c in load_cases(data, data_format, n) if not c.is_noop]
    rng = random.Random(seed)
    rephrases = [(c.rephrases[0], i) for i, c in enumerate(cases) if c.rephrases]
    locality = [(c.locality[0][0], -1) for c in cases if c.locality]
    rng.shuffle(rephrases)
    rng.shuffle(locality)
    # The memory's gate is open (the store is searched directly): the cut-offs are replayed from the
    # numbers taken here, and the backend's review is asked once about every hit near them.
    gate_open = f"sentinel.margin={OPEN}" if learned else "sentinel.min_cosine=-1"
    loose = load_config(backend=backend, overrides=[*overrides, gate_open, "conflict.restated_cosine=null"])
    with EditMemory.temporary(loose, lm=lm, encoder=encoder, device=device) as memory:
        trained = float(getattr(memory.encoder, "sentinel_margin", 0.0))
        base = trained if learned else config.sentinel.min_cosine
        edit_ids = [memory.add(c.prompt, c.target, c.subject, policy="keep_both").edit_id for c in cases]
        rows: list[tuple[bool, str, list[tuple[float, SearchHit]], str]] = []
        subject_margin = config.retrieval.subject_margin
        for in_scope, sampled in ((True, rephrases[:sample]), (False, locality[:sample])):
            read_as, spans = all_views([q for q, _ in sampled], config.retrieval.last_sentence)
            vectors = memory.encoder.encode_queries(read_as)  # (sum of views, dim)
            found = memory.store.search(vectors, k=memory.gate.search_k, namespace="default")
            for span, (_, case) in zip(spans, sampled, strict=True):
                read: list[tuple[float, str, list[tuple[float, SearchHit]]]] = []
                for j in span:
                    # the base cut-off: the open gate's own, moved back to the trained margin or min_cosine
                    cut = memory.sentinel.threshold(vectors[j]) - OPEN + base if learned else base
                    near = [(h.score - cut, h) for h in found[j] if h.score - cut > -LOOSE]
                    lead = max(
                        (
                            e
                            for e, h in near
                            if admits(e, names_edit_subject(read_as[j], h.record), subject_margin)
                        ),
                        default=-2.0,
                    )
                    read.append((lead, read_as[j], near))
                # the view the gate reads at the config's cut-off (recall/retrieval/gate.py `_read`); the
                # replayed settings keep it
                _, question, near = max(read, key=lambda r: r[0])
                rows.append((in_scope, question, near, edit_ids[case] if case >= 0 else ""))
        # one (question, hit) at a time: the review keeps or declines each hit on its own
        flat = [(question, hit) for _, question, near, _ in rows for _, hit in near]
        verdicts = memory.backend.review([q for q, _ in flat], [(h,) for _, h in flat])
        kept = iter(bool(v) for v in verdicts)
        queries = [
            GateQuery(
                in_scope,
                tuple(e for e, _ in near),
                tuple(next(kept) for _ in near),
                tuple(names_edit_subject(question, h.record) for _, h in near),
                tuple(h.record.edit_id == own for _, h in near),
            )
            for in_scope, question, near, own in rows
        ]
    return queries, base


def admits(excess: float, named: bool, subject_margin: float | None) -> bool:
    """The gate's rule for a hit beating its cut-off by `excess`: past it, and by subject_margin more
    unless the question names the hit's subject."""
    return excess > 0 and (named or subject_margin is None or excess > subject_margin)


def replay(
    queries: Sequence[GateQuery], shift: float, window: float | None, subject_margin: float | None = None
) -> GridRow:
    """The gate and review rates with the cut-off `shift` above the base one (negative: looser), and hits
    whose subject the question does not name held to `subject_margin` more (None: no subject test)."""
    opened = {True: 0, False: 0}
    reviewed = {True: 0, False: 0}
    total = {True: 0, False: 0}
    own_used = 0
    for query in queries:
        total[query.in_scope] += 1
        named = query.named or (True,) * len(query.excess)
        own = query.own or (False,) * len(query.excess)
        admitted = [
            (e, kept, mine)
            for e, kept, name, mine in zip(query.excess, query.kept, named, own, strict=True)
            if admits(e - shift, name, subject_margin)
        ]
        if not admitted:
            continue
        if window is not None and admitted[0][0] - shift >= window:
            opened[query.in_scope] += 1
            own_used += any(mine for _, _, mine in admitted)
            continue
        reviewed[query.in_scope] += 1
        opened[query.in_scope] += any(kept for _, kept, _ in admitted)
        own_used += any(kept and mine for _, kept, mine in admitted)
    share = {k: 100.0 / max(1, total[k]) for k in total}
    return GridRow(
        shift,
        window,
        false_reject=100.0 - opened[True] * share[True],
        false_accept=opened[False] * share[False],
        reviewed_in=reviewed[True] * share[True],
        reviewed_out=reviewed[False] * share[False],
        own_missed=100.0 - own_used * share[True] if any(q.own for q in queries) else 0.0,
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
    config = load_config(backend=backend, overrides=overrides)
    queries, base = collect(backend, overrides, data, data_format, n, sample, device=device)
    knob = "sentinel.margin" if config.sentinel.kind == "learned" else "sentinel.min_cosine"
    print(
        f"{data.name}: {n} records; {sum(q.in_scope for q in queries)} rephrases, "
        f"{sum(not q.in_scope for q in queries)} locality questions; base {knob} {base:.4f}, "
        f"{config.retrieval.search_k or config.retrieval.top_k} hits read per question"
    )
    print(f"Without the subject test (retrieval.subject_margin null):\n| {knob} | review_within | {HEADER}")
    for shift in SHIFTS:
        for window in WINDOWS:
            row = replay(queries, shift, window)
            print(f"| {base + shift:.4f} | {_within(window)} | {_rates(row)} |")
    window = config.retrieval.review_within
    print(f"\nWith the subject test, review_within {_within(window)}:\n| {knob} | subject_margin | {HEADER}")
    for shift in SHIFTS:
        for subject_margin in SUBJECT_MARGINS:
            row = replay(queries, shift, window, subject_margin)
            shown = "null" if subject_margin is None else f"{subject_margin:g}"
            print(f"| {base + shift:.4f} | {shown} | {_rates(row)} |")
    print(
        f"set them with --set {knob}=M --set retrieval.review_within=W --set retrieval.subject_margin=S "
        "(or in the preset)"
    )
    return 0


HEADER = (
    "false reject % | own edit missed % | false accept % | reviewed: rephrases % | locality % |\n"
    "|---:|---:|---:|---:|---:|---:|---:|"
)


def _within(window: float | None) -> str:
    return "always" if window is None else ("never" if window == 0 else f"{window:g}")


def _rates(row: GridRow) -> str:
    return (
        f"{row.false_reject:.1f} | {row.own_missed:.1f} | {row.false_accept:.1f} | {row.reviewed_in:.0f} "
        f"| {row.reviewed_out:.0f}"
    )
