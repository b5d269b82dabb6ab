"""`recall calibrate --conflicts`: how well the question-key cosine of two edits tells the same fact from
another question, to choose conflict.min_cosine (supersede at or above) and conflict.similar_cosine
(report at or above) for an encoder. Use train or val data, never an evaluation split."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recall.build import shared_encoder
from recall.config import load_config
from recall.datasets.cases import EvalCase, normalize_answer, subject_groups
from recall.datasets.loading import FormatName, load_cases
from recall.retrieval.encoder import Encoder

CUTS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
Pairs = list[tuple[str, str]]


def _mentions(text: str, subject: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(subject.casefold())}(?!\w)", text.casefold()) is not None


def question_pairs(cases: Sequence[EvalCase]) -> dict[str, Pairs]:
    """Question pairs by what they are: the same fact (an edit and its rephrase; two edits of one subject
    with other answers, on zsRE the same question reworded) and another question about the same subject
    (a locality question that names the edit's subject: KnowEdit's relation specificity)."""
    same_fact: Pairs = [(c.prompt, r) for c in cases for r in c.rephrases]
    same_fact += [
        (a.prompt, b.prompt)
        for group in subject_groups(cases).values()
        for a, b in itertools.combinations(group, 2)
        if normalize_answer(a.target) != normalize_answer(b.target)
    ]
    other_question = [
        (c.prompt, q) for c in cases if c.subject for q, _ in c.locality if _mentions(q, c.subject)
    ]
    return {"same fact": same_fact, "same subject, other question": other_question}


def question_keys(encoder: Encoder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Each distinct text's question key (dim,), unit length: every text is encoded once, however many
    pairs it is in."""
    distinct = list(dict.fromkeys(texts))
    return dict(zip(distinct, encoder.encode_keys(distinct), strict=True))


def pair_cosines(keys: dict[str, np.ndarray], pairs: Pairs) -> np.ndarray:
    """(n,) cosine of the two questions' keys (the question key an edit is stored and checked with)."""
    return np.asarray([float(keys[a] @ keys[b]) for a, b in pairs], dtype=np.float32)


def nearest_other_subject(keys: dict[str, np.ndarray], cases: Sequence[EvalCase]) -> np.ndarray:
    """(m,) for each case with a subject: the cosine of its question to the closest question of a case
    about another subject (what a cut-off would wrongly call the same fact)."""
    named = [c for c in cases if c.subject]
    if len(named) < 2:
        return np.zeros(0, np.float32)
    matrix = np.stack([keys[c.prompt] for c in named])  # (m, dim)
    subjects = np.array([normalize_answer(c.subject or "") for c in named])
    scores = matrix @ matrix.T  # (m, m)
    scores[subjects[:, None] == subjects[None, :]] = -np.inf
    best = scores.max(axis=1)
    return np.asarray(best[np.isfinite(best)])


def conflict_table(rows: dict[str, np.ndarray]) -> list[str]:
    """Markdown: per set of pairs, how many and the share at or above each cut-off."""
    lines = [
        "| pairs | n | " + " | ".join(f">= {c}" for c in CUTS) + " |",
        "|---|---:|" + "---:|" * len(CUTS),
    ]
    for name, cosines in rows.items():
        shares = " | ".join(f"{float((cosines >= c).mean()):.3f}" if len(cosines) else "-" for c in CUTS)
        lines.append(f"| {name} | {len(cosines)} | {shares} |")
    return lines


def run_calibrate_conflicts(
    backend: str, overrides: Sequence[str], data: Path, fmt: FormatName, *, n: int, device: str = "auto"
) -> int:
    config = load_config(backend=backend, overrides=list(overrides))
    encoder = shared_encoder(config.encoder.name, config.encoder.batch_size, device)
    cases = load_cases(data, fmt, n=n)
    pairs = question_pairs(cases)
    texts = [c.prompt for c in cases] + [t for group in pairs.values() for pair in group for t in pair]
    keys = question_keys(encoder, texts)
    rows = {name: pair_cosines(keys, group) for name, group in pairs.items()}
    rows["nearest edit about another subject"] = nearest_other_subject(keys, cases)
    print(f"{len(cases)} records of {data.name}, question keys from {config.encoder.name}")
    print("\n".join(conflict_table(rows)))
    rule = config.conflict
    print(
        f"now: supersede at >= conflict.min_cosine {rule.min_cosine}, report as similar at >= "
        f"conflict.similar_cosine {rule.similar_cosine}. The same fact should clear the report cut-off, "
        "other questions should not reach the supersede cut-off."
    )
    return 0
