"""Current over stale: of two admitted edits that answer one question about one subject differently, the
newer answers and the older is overridden (shown as such by --why, never deleted).

A user who corrects a correction in other words ("The CEO of Acme is" -> Jane, later "Who runs Acme?" ->
Bob) leaves two active edits whose question keys sit below the supersede cut-off (conflict.min_cosine),
and a model handed both follows either. Both admitted for one query means both were judged to answer
it; the same subject and question keys at or above conflict.restated_cosine make them the same fact.
An edit added with policy keep_both asked to stand beside the older ones, so it overrides none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_store import EditRecord, MemoryStore, SearchHit
from recall.retrieval.subjects import subject_key

KEPT_BESIDE = "keep_both"  # EditRecord.meta["policy"] of an edit added with policy keep_both


def current_only(
    store: MemoryStore, hits: Sequence[SearchHit], same_fact_cosine: float | None
) -> tuple[tuple[SearchHit, ...], tuple[SearchHit, ...]]:
    """(kept, overridden): `hits` (admitted for one query, best first) without those a newer hit of
    theirs overrides. None for `same_fact_cosine` keeps every hit."""
    if same_fact_cosine is None or len(hits) < 2:
        return tuple(hits), ()
    subjects = [subject_key(h.record) for h in hits]
    if len({s for s in subjects if s}) == len([s for s in subjects if s]):
        return tuple(hits), ()  # no two hits share a subject (the usual case: no key is read)
    keys = np.stack([store.vectors(h.record.edit_id)[0] for h in hits])  # (n, dim): question keys
    cosines = keys @ keys.T
    overridden: set[int] = set()
    for i, older in enumerate(hits):
        for j, newer in enumerate(hits):
            if (
                subjects[i]
                and subjects[i] == subjects[j]
                and _newer(newer.record, older.record)
                and newer.record.meta.get("policy") != KEPT_BESIDE
                and newer.record.target.casefold() != older.record.target.casefold()
                and float(cosines[i, j]) >= same_fact_cosine
            ):
                overridden.add(i)
    kept = tuple(h for i, h in enumerate(hits) if i not in overridden)
    return kept, tuple(h for i, h in enumerate(hits) if i in overridden)


def _newer(a: EditRecord, b: EditRecord) -> bool:
    return (a.created_at, a.edit_id) > (b.created_at, b.edit_id)
