"""Which active edits a new (or restored) edit meets: those about the same question, which the conflict
policy acts on, and those close to it with another answer, which are only reported."""

from __future__ import annotations

import numpy as np

from memory_store import EditRecord, MemoryStore, SearchHit
from recall.config import ConflictConfig

# Candidates read per check: a handful of edits can sit near one question; more would only add noise.
NEIGHBOURS_K = 5


def neighbours(
    store: MemoryStore, record: EditRecord, question_key: np.ndarray, rule: ConflictConfig
) -> tuple[list[EditRecord], tuple[SearchHit, ...]]:
    """(conflicts, similar) among the active edits of `record`'s namespace, `record` itself excluded.

    `question_key` is (1, dim): the edit's first key, its question. Conflicts score >= rule.min_cosine
    against it; similar edits score in [rule.similar_cosine, rule.min_cosine) and answer otherwise.
    Cosine alone cannot tell "X follows" from "X is followed by" (0.99 with MiniLM), nor a reworded
    question from another question about the same subject, so near misses are shown, never acted on.
    """
    hits = store.search(question_key, k=NEIGHBOURS_K, namespace=record.namespace)[0]
    others = [h for h in hits if h.record.edit_id != record.edit_id]
    conflicts = [h.record for h in others if h.score >= rule.min_cosine]
    floor = rule.similar_cosine
    if floor is None:
        return conflicts, ()
    similar = tuple(
        h
        for h in others
        if floor <= h.score < rule.min_cosine and h.record.target.casefold() != record.target.casefold()
    )
    return conflicts, similar
