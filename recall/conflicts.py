"""Which active edits a new (or restored) edit meets: those about the same question, which the conflict
policy acts on, and those close to it with another answer, which are only reported; and the same check
over a whole memory (`conflict_pairs`), for edits that went in side by side."""

from __future__ import annotations

import numpy as np

from memory_store import EditRecord, MemoryStore, SearchHit
from recall.config import ConflictConfig
from recall.results import ConflictPair

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
    same, close = _close_hits(store, record, question_key, rule)
    return [hit.record for hit in same], tuple(close)


def conflict_pairs(store: MemoryStore, rule: ConflictConfig, namespace: str | None) -> list[ConflictPair]:
    """Every pair of active edits (in `namespace`, None = each namespace on its own) that `neighbours`
    finds with different answers, highest score first. An edit and its duplicate (same answer) are not
    a conflict. Edits added with policy keep_both, or before a closer cut-off was set, end up here."""
    found: dict[tuple[str, str], ConflictPair] = {}
    for record in store.list(namespace=namespace, status="active"):
        same, close = _close_hits(store, record, store.vectors(record.edit_id)[:1], rule)
        for hit in [*same, *close]:
            if not _answers_otherwise(hit.record, record):
                continue
            older, newer = sorted((record, hit.record), key=lambda r: (r.created_at, r.edit_id))
            pair = (older.edit_id, newer.edit_id)
            if pair not in found or found[pair].score < hit.score:
                found[pair] = ConflictPair(older, newer, hit.score, hit.score >= rule.min_cosine)
    return sorted(found.values(), key=lambda p: -p.score)


def _close_hits(
    store: MemoryStore, record: EditRecord, question_key: np.ndarray, rule: ConflictConfig
) -> tuple[list[SearchHit], list[SearchHit]]:
    """(same question: score >= min_cosine, whatever the answer; close: score in [similar_cosine,
    min_cosine) with another answer), `record` itself excluded."""
    hits = store.search(question_key, k=NEIGHBOURS_K, namespace=record.namespace)[0]
    others = [h for h in hits if h.record.edit_id != record.edit_id]
    same = [h for h in others if h.score >= rule.min_cosine]
    floor = rule.similar_cosine
    if floor is None:
        return same, []
    close = [h for h in others if floor <= h.score < rule.min_cosine and _answers_otherwise(h.record, record)]
    return same, close


def _answers_otherwise(a: EditRecord, b: EditRecord) -> bool:
    return a.target.casefold() != b.target.casefold()
