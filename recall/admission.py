"""Which of a query's hits reach the backend besides the sentinel's verdict: an edit asked word for word
is used alone, and of the admitted hits only those close to the best one are kept (EditMemory's ask flow)."""

from __future__ import annotations

from collections.abc import Sequence

from memory_store import SearchHit


def asked_alone(query: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
    """The hits whose edit question is the query itself (case and spacing aside): these alone are
    admitted, even where the gate says no, and no review declines them. An edited question asked word
    for word needs no model to recognise it, and no other edit can change its answer. Keys and queries
    of a trained encoder are asymmetric: without this an edit of the same question with another answer
    (kept with policy keep_both) can outrank it, and beside it the backend follows either."""
    asked = words(query)
    return [hit for hit in hits if words(hit.record.prompt) == asked]


def close_to_best(admitted: Sequence[SearchHit], max_gap: float | None) -> list[SearchHit]:
    """The first admitted hit and those scoring within `max_gap` of it (all of them for None). A second
    edit helps when retrieval cannot tell it from the first, e.g. the same question kept with another
    answer; an unrelated one that merely passed the gate distracts the model from the right one."""
    if max_gap is None or not admitted:
        return list(admitted)
    best = admitted[0].score
    return [hit for hit in admitted if best - hit.score <= max_gap]


def words(text: str) -> str:
    """`text` with case and runs of spacing folded."""
    return " ".join(text.casefold().split())
