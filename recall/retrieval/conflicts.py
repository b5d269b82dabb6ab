"""Which active edits a new (or restored) edit meets: those about the same question, which the conflict
policy acts on, and those close to it with another answer, which are only reported; and the same check
over a whole memory (`conflict_pairs`), for edits that went in side by side."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from memory_store import EditRecord, MemoryStore, SearchHit
from recall.backends.base import EditBackend
from recall.config import ConflictConfig
from recall.results import ConflictPair
from recall.retrieval.identifiers import name_other_things
from recall.retrieval.subjects import subject_key

# Candidates read per check: a handful of edits can sit near one question; more would only add noise.
NEIGHBOURS_K = 5
SEARCH_BATCH = 256  # question keys per store.search call when a whole memory is checked


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
    same, close = _split(record, hits, rule)
    return [hit.record for hit in same], tuple(close)


def restated(
    store: MemoryStore,
    backend: EditBackend,
    record: EditRecord,
    question_key: np.ndarray,
    cut: float | None,
) -> list[EditRecord]:
    """The active edits `record` restates: about its subject (given or guessed), with another answer,
    question keys scoring `cut` or more against its (1, dim) `question_key`, and kept by the backend's
    relevance probe both ways: each old edit read beside `record`'s question, and `record` beside each
    old question. None for `cut`, or a backend that reviews nothing (no probe): none."""
    subject = subject_key(record)
    if cut is None or not subject or not backend.reviews:
        return []
    hits = store.search(question_key, k=NEIGHBOURS_K, namespace=record.namespace)[0]
    about = [
        h
        for h in hits
        if h.record.edit_id != record.edit_id
        and h.score >= cut
        and subject_key(h.record) == subject
        and _answers_otherwise(h.record, record)
    ]
    if not about:
        return []
    forward = backend.review([record.prompt], [about])[0]  # the old edits would answer the new question
    if not forward:
        return []
    # ... and the new edit would answer each old question: one fact asked two ways reads the same both
    # ways, while "The gender of X is" beside an edit of "The occupation of X is" fools the probe one way
    # more often than both
    mine = SearchHit(record, 1.0, 0)
    back = backend.review([h.record.prompt for h in forward], [(mine,)] * len(forward))
    return [h.record for h, kept in zip(forward, back, strict=True) if kept]


def conflict_pairs(
    store: MemoryStore, rule: ConflictConfig, namespace: str | None, *, progress: bool = False
) -> list[ConflictPair]:
    """Every pair of active edits (in `namespace`, None = each namespace on its own) that `neighbours`
    finds with different answers, highest score first. An edit and its duplicate (same answer) are not
    a conflict. Edits added with policy keep_both, or before a closer cut-off was set, end up here."""
    records = store.list(namespace=namespace, status="active")
    groups: dict[str, list[EditRecord]] = {}
    for record in records:
        groups.setdefault(record.namespace, []).append(record)
    found: dict[tuple[str, str], ConflictPair] = {}
    with tqdm(total=len(records), desc="edits checked", unit="edit", disable=not progress) as bar:
        for name, members in groups.items():
            for start in range(0, len(members), SEARCH_BATCH):
                chunk = members[start : start + SEARCH_BATCH]
                keys = np.concatenate([store.vectors(r.edit_id)[:1] for r in chunk])  # (len(chunk), dim)
                for record, hits in zip(
                    chunk, store.search(keys, k=NEIGHBOURS_K, namespace=name), strict=True
                ):
                    same, close = _split(record, hits, rule)  # close ones already answer otherwise
                    for hit in same:
                        if _answers_otherwise(hit.record, record):
                            _keep_best(found, record, hit, same_question=True)
                    for hit in close:
                        _keep_best(found, record, hit, same_question=False)
                bar.update(len(chunk))
    return sorted(found.values(), key=lambda p: -p.score)


def _keep_best(
    found: dict[tuple[str, str], ConflictPair], record: EditRecord, hit: SearchHit, *, same_question: bool
) -> None:
    """Record the pair (record, hit.record) once, oldest first, at the higher of its two scores."""
    older, newer = sorted((record, hit.record), key=lambda r: (r.created_at, r.edit_id))
    pair = (older.edit_id, newer.edit_id)
    if pair not in found or found[pair].score < hit.score:
        found[pair] = ConflictPair(older, newer, hit.score, same_question)


def _split(
    record: EditRecord, hits: list[SearchHit], rule: ConflictConfig
) -> tuple[list[SearchHit], list[SearchHit]]:
    """`record`'s search hits as (same question: score >= min_cosine, whatever the answer, and no
    number, code or name apart (recall/retrieval/identifiers.py); close: with another answer, score in
    [similar_cosine, min_cosine) or higher but naming another identifier), `record` itself excluded."""
    others = [h for h in hits if h.record.edit_id != record.edit_id]
    apart = {h.record.edit_id for h in others if name_other_things(h.record.prompt, record.prompt)}
    same = [h for h in others if h.score >= rule.min_cosine and h.record.edit_id not in apart]
    floor = rule.similar_cosine
    if floor is None:
        return same, []
    close = [h for h in others if h not in same and h.score >= floor and _answers_otherwise(h.record, record)]
    return same, close


def _answers_otherwise(a: EditRecord, b: EditRecord) -> bool:
    return a.target.casefold() != b.target.casefold()
