"""The LTE alignment rows (METHODS.md §2.2), built from train splits with recall's own loaders and encoder.

Three kinds of row, each a fact block plus a question:
- in_scope: the block holds the edit's statement (at a random position among 0-2 distractors);
  the target is the new answer, asked as the edit question or its paraphrase.
- portability: the same block; a question whose answer follows from the edit (KnowEdit train).
- out_of_scope: a locality question under the statements nearest to it (what a gate that admits the
  wrong edit hands over); the target is the gold locality answer, and the loss pulls the adapted
  model's distribution over it towards the base model's without the block (training/lte.py), the
  very agreement the eval's locality measures. The model learns to leave the question alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from recall.datasets.cases import EvalCase
from recall.datasets.loading import load_cases
from recall.lm.prompts import Fact, statement
from recall.retrieval.encoder import Encoder
from training.config import LteTrainConfig, TrainDataConfig
from training.longform_data import load_wikibio

RowKind = Literal["in_scope", "portability", "out_of_scope"]

# Evaluation splits the training data must never overlap (checked on the edit prompts).
EVAL_FILES: tuple[tuple[str, str], ...] = (
    ("../shared/data/zsre/zsre_mend_eval_portability_gpt4.json", "zsre"),
    ("../shared/data/counterfact/counterfact-edit.json", "counterfact"),
    ("../shared/data/knowedit/ZsRE-test-all.json", "knowedit"),
    ("../shared/data/knowedit/wiki_counterfact_test_cf.json", "knowedit"),
)


@dataclass(frozen=True)
class AlignmentRow:
    """One training conversation: the fact block, the question, and the answer to learn (for
    out_of_scope rows the answer whose tokens are compared with the base model's)."""

    facts: tuple[Fact, ...]  # (prompt, target) of each statement in the block
    question: str
    target: str
    kind: RowKind
    source: str


@dataclass(frozen=True)
class DataReport:
    """What went into the rows, for the run's log and the adapter's training.json."""

    cases: dict[str, int]
    rows: dict[str, int]
    excluded: int  # train cases left out: no-op edits, or an edit prompt that occurs in an evaluation split


def load_train_cases(config: TrainDataConfig) -> tuple[dict[str, list[EvalCase]], int]:
    """The train cases per source (each file capped at its configured count), and how many were
    left out: no-op edits (target == original answer) and cases whose edit prompt occurs in an
    evaluation split.

    CounterFact's train and edit splits are disjoint by case id, but 14 of the first 800 train cases
    ask the same prompt as an edit case (another target): those are left out too.
    """
    sources: dict[str, list[EvalCase]] = {
        "zsre": load_cases(config.zsre_train, "zsre", config.zsre_records),
        "counterfact": load_cases(config.counterfact_train, "counterfact", config.counterfact_records),
    }
    for path in config.knowedit_train:
        sources[f"knowedit:{Path(path).stem}"] = load_cases(path, "knowedit", config.knowedit_records)
    if config.wikibio_records:
        sources["wikibio"] = load_wikibio(config.wikibio_train, config.wikibio_records, config.seed)
    held_out = eval_prompts()
    kept = {
        name: [c for c in cases if not c.is_noop and c.prompt.strip().lower() not in held_out]
        for name, cases in sources.items()
    }
    excluded = sum(len(c) for c in sources.values()) - sum(len(c) for c in kept.values())
    return kept, excluded


def eval_prompts() -> set[str]:
    """Edit prompts of every evaluation split that exists here (missing files are skipped)."""
    prompts: set[str] = set()
    for path, form in EVAL_FILES:
        if Path(path).is_file():
            prompts.update(c.prompt.strip().lower() for c in load_cases(path, form))  # type: ignore[arg-type]
    return prompts


def build_rows(
    config: LteTrainConfig, sources: dict[str, list[EvalCase]], encoder: Encoder, excluded: int
) -> tuple[list[AlignmentRow], DataReport]:
    """Every alignment row (unshuffled) and a report of the mix."""
    rng = random.Random(config.seed)
    cases = [(name, case) for name, items in sources.items() for case in items]
    facts: list[Fact] = [(c.prompt, c.target) for _, c in cases]
    statements = [statement(p, t) for p, t in facts]
    keys = encoder.encode_keys(statements)  # (N, dim), L2-normalised; one pass serves both searches
    neighbours = nearest_others(keys, statements, config.neighbours, [c.subject for _, c in cases])
    asked = [i for i, (_, c) in enumerate(cases) if c.locality]
    queries = encoder.encode_queries([cases[i][1].locality[0][0] for i in asked])  # (Q, dim)
    near_question = dict(zip(asked, nearest_to(queries, keys, config.neighbours), strict=True))
    rows: list[AlignmentRow] = []
    for index, (name, case) in enumerate(cases):
        pool = [facts[j] for j in neighbours[index]]
        own = facts[index]
        question = case.prompt
        if case.rephrases and rng.random() >= config.question_rate:
            question = rng.choice(case.rephrases)
        rows.append(AlignmentRow(_block(rng, own, pool, config), question, case.target, "in_scope", name))
        for prompt, answer in case.portability[:1]:
            rows.append(AlignmentRow(_block(rng, own, pool, config), prompt, answer, "portability", name))
        for prompt, answer in case.locality[:1]:
            nearest = [facts[j] for j in near_question[index]]
            block = _block(rng, nearest[0], nearest[1:], config)
            rows.append(AlignmentRow(block, prompt, answer, "out_of_scope", name))
    report = DataReport(
        cases={name: len(items) for name, items in sources.items()},
        rows={
            kind: sum(r.kind == kind for r in rows) for kind in ("in_scope", "portability", "out_of_scope")
        },
        excluded=excluded,
    )
    return rows, report


def _block(rng: random.Random, own: Fact, pool: Sequence[Fact], config: LteTrainConfig) -> tuple[Fact, ...]:
    """The statement plus 0-2 distractors (LTE's 50/25/25), the statement at a random position."""
    count = rng.choices(range(len(config.distractor_mix)), weights=config.distractor_mix)[0]
    facts = [own, *rng.sample(list(pool), min(count, len(pool)))]
    rng.shuffle(facts)  # LTE's notebook always puts the relevant fact first; we do not
    return tuple(facts)


def nearest_others(
    vectors: np.ndarray, statements: Sequence[str], k: int, subjects: Sequence[str | None]
) -> list[list[int]]:
    """For each statement (keys (N, dim)), the k nearest others by cosine with another subject and
    other text."""
    found: list[list[int]] = []
    for start in range(0, len(statements), 512):
        sims = vectors[start : start + 512] @ vectors.T  # (chunk, N)
        order = np.argsort(-sims, axis=1)[:, : k * 4 + 1]
        for offset, candidates in enumerate(order):
            i = start + offset
            keep = [
                int(j)
                for j in candidates
                if j != i
                and statements[j] != statements[i]
                and (subjects[i] is None or subjects[j] != subjects[i])
            ]
            found.append(keep[:k])
    return found


def nearest_to(queries: np.ndarray, keys: np.ndarray, k: int) -> list[list[int]]:
    """For each question (queries (Q, dim)), its k nearest statements (keys (N, dim)) by cosine, nearest
    first: what a memory holding every train edit would hand over for it."""
    found: list[list[int]] = []
    for start in range(0, len(queries), 512):
        sims = queries[start : start + 512] @ keys.T  # (chunk, N)
        found.extend(np.argsort(-sims, axis=1)[:, :k].tolist())
    return found
