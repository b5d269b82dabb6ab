"""The gate: query -> the hits a retrieval backend gets (EditMemory's ask flow). The store is searched
for the query and its last sentence (the view that admits an edit by more is read: views.py), the
sentinel admits hits (those about a subject the query does not name need a higher score), an edit asked
word for word is used alone, a newer edit of the same fact overrides an older one, only hits close to the
best one are kept, and a backend with a review may decline what the gate was not sure of."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from memory_store import MemoryStore, SearchHit, Sentinel
from recall.backends.base import Capability, EditBackend
from recall.config import RecallConfig, RetrievalConfig
from recall.results import Retrieval
from recall.retrieval.current import current_only
from recall.retrieval.encoder import Encoder
from recall.retrieval.subjects import names_edit_subject
from recall.retrieval.views import all_views

# (queries, their admitted hits) -> the hits kept: EditBackend.review
Review = Callable[[Sequence[str], Sequence[Sequence[SearchHit]]], list[tuple[SearchHit, ...]]]
# Hits read per query even when top_k is 1: the word-for-word rule and max_gap need the runners-up.
MIN_SEARCH_K = 3
# Hits a Retrieval shows (--why) besides those admitted, declined or overridden: the runners-up.
SHOWN = 5


class Gate:
    """Search, sentinel with the subject test, word-for-word rule, current over stale, max_gap and review,
    for a batch of queries."""

    def __init__(
        self,
        store: MemoryStore,
        encoder: Encoder,
        sentinel: Sentinel,
        config: RetrievalConfig,
        review: Review | None = None,
        backend_reads_hits: bool = True,
        same_fact_cosine: float | None = None,
    ) -> None:
        self.store, self.encoder, self.sentinel, self.config = store, encoder, sentinel, config
        self.review = review
        self.backend_reads_hits = backend_reads_hits
        self.same_fact_cosine = same_fact_cosine  # conflict.restated_cosine: recall/retrieval/current.py

    @classmethod
    def of(
        cls,
        store: MemoryStore,
        encoder: Encoder,
        sentinel: Sentinel,
        backend: EditBackend,
        config: RecallConfig,
    ) -> Gate:
        """The gate of a memory: the backend's review, if it has one, and the config's rules."""
        review = backend.review if Capability.REVIEW in backend.capabilities else None
        reads_hits = Capability.USES_RETRIEVAL in backend.capabilities
        same_fact = config.conflict.restated_cosine
        return cls(store, encoder, sentinel, config.retrieval, review, reads_hits, same_fact)

    def for_backend(self, queries: Sequence[str], namespace: str, use_memory: bool) -> list[Retrieval]:
        """The verdicts the backend gets: none (no hits for any query) with use_memory=False or for a
        backend that reads no hits (an in-model backend decides inside the model)."""
        if use_memory and queries and self.backend_reads_hits:
            return self.admit(queries, namespace)
        return [Retrieval(q, (), (), float("nan")) for q in queries]

    @property
    def search_k(self) -> int:
        return self.config.search_k or max(self.config.top_k, MIN_SEARCH_K)

    def admit(self, queries: Sequence[str], namespace: str) -> list[Retrieval]:
        """One Retrieval per query: the top hits, those admitted, those overridden by a newer edit of the
        same fact and those the review declined."""
        views, vectors, results, passing = self._read(queries, namespace)
        gated: list[tuple[SearchHit, ...]] = []
        asked_rows: list[tuple[SearchHit, ...]] = []
        open_rows: list[int] = []  # rows whose admitted hits go to review
        for row, (query, vector, hits, passed) in enumerate(
            zip(views, vectors, results, passing, strict=True)
        ):
            asked = tuple(exact_question_hits(query, hits))
            asked_rows.append(asked)
            # the edit asked word for word alone, else the best admitted hits
            base = asked or tuple(close_to_best(passed, self.config.max_gap)[: self.config.top_k])
            rivals = self._rivals(base, passed)  # newer edits of their fact, wherever they rank
            gated.append(base + rivals)
            if rivals or (base and not asked and not self._confident(base[0], vector)):
                open_rows.append(row)  # rivals must pass review before they override anything
        kept = list(gated)
        if open_rows and self.review is not None:
            verdicts = self.review([views[i] for i in open_rows], [gated[i] for i in open_rows])
            for i, verdict in zip(open_rows, verdicts, strict=True):
                # an edit asked word for word is never declined: only its rivals are reviewed
                kept[i] = (*asked_rows[i], *(h for h in verdict if h not in asked_rows[i]))
        # current over stale among what the review kept: an edit the model would not use for this
        # question overrides nothing
        stale: list[tuple[SearchHit, ...]] = []
        for i, keep in enumerate(kept):
            current, overridden = current_only(self.store, keep, self.same_fact_cosine)
            if asked_rows[i]:
                current = tuple(h for h in current if h in asked_rows[i]) or current
            kept[i], gated[i] = current, tuple(h for h in gated[i] if h not in overridden)
            stale.append(overridden)
        return [
            Retrieval(
                query=query,
                hits=shown(hits, admitted + overridden),
                admitted=keep,
                threshold=self.sentinel.threshold(vector),
                declined=tuple(hit for hit in admitted if hit not in keep),
                overridden=overridden,
                view=view if view != query else None,
            )
            for query, view, vector, hits, admitted, keep, overridden in zip(
                queries, views, vectors, results, gated, kept, stale, strict=True
            )
        ]

    def _read(
        self, queries: Sequence[str], namespace: str
    ) -> tuple[list[str], np.ndarray, list[list[SearchHit]], list[list[SearchHit]]]:
        """Each query's view (recall/retrieval/views.py) the gate reads it as, that view's vector (n, dim),
        its search hits and those the sentinel and subject test admit (`passing`): of the query and its
        last sentence, the one whose best admitted hit beats its cut-off by most (the query itself on a
        tie, or when no view has an admitted hit)."""
        flat, spans = all_views(queries, self.config.last_sentence)
        vectors = self.encoder.encode_queries(flat)  # (sum of views, dim)
        results = self.store.search(vectors, k=self.search_k, namespace=namespace)
        passed = [self.passing(*row) for row in zip(flat, vectors, results, strict=True)]

        def lead(j: int) -> float:  # by how much row j's best admitted hit beats its cut-off
            return passed[j][0].score - self.sentinel.threshold(vectors[j]) if passed[j] else -np.inf

        chosen = [max(rows, key=lambda j: (lead(j), -j)) if len(rows) > 1 else rows[0] for rows in spans]
        return (
            [flat[j] for j in chosen],
            vectors[chosen],
            [results[j] for j in chosen],
            [passed[j] for j in chosen],
        )

    def _rivals(self, base: tuple[SearchHit, ...], passed: Sequence[SearchHit]) -> tuple[SearchHit, ...]:
        """The admitted hits outside `base` that would override one in it (recall/retrieval/current.py)."""
        others = [h for h in passed if h not in base]
        if not base or not others:
            return ()
        _, overridden = current_only(self.store, [*base, *others], self.same_fact_cosine)
        if not any(h in base for h in overridden):
            return ()
        return tuple(h for h in others if h not in overridden)

    def passing(self, query: str, vector: np.ndarray, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """The hits the sentinel admits, less those about a subject `query` does not name that beat its
        cut-off by less than retrieval.subject_margin (every admitted hit when that is None)."""
        admitted = self.sentinel.admit(vector, hits)
        margin = self.config.subject_margin
        if margin is None:
            return admitted
        cut = self.sentinel.threshold(vector) + margin
        return [hit for hit in admitted if hit.score > cut or names_edit_subject(query, hit.record)]

    def _confident(self, best: SearchHit, vector: np.ndarray) -> bool:
        """Whether the sentinel admitted `best` by retrieval.review_within or more (it skips review)."""
        within = self.config.review_within
        return within is not None and best.score - self.sentinel.threshold(vector) >= within


def shown(hits: Sequence[SearchHit], decided: Sequence[SearchHit]) -> tuple[SearchHit, ...]:
    """The first SHOWN of `hits` and any later one in `decided`, in rank order: the candidates read
    past those are noise to a reader of --why."""
    ids = {h.record.edit_id for h in decided}
    return tuple(h for i, h in enumerate(hits) if i < SHOWN or h.record.edit_id in ids)


def exact_question_hits(query: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
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
