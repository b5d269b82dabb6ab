"""Typed values EditMemory returns: Edit (a request), EditResult, ConflictPair, Answer, TargetScore,
Retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from memory_store import EditRecord, SearchHit
from memory_store.errors import InvalidEditError


@dataclass(frozen=True, slots=True)
class Edit:
    """One fact to teach: `prompt` (usually a question) should be answered with `target`."""

    prompt: str
    target: str
    subject: str | None = None
    namespace: str = "default"

    @classmethod
    def of(cls, item: Edit | tuple[str, str], index: int = 0) -> Edit:
        """`item` itself, or an Edit of a (prompt, target) pair; anything else is an InvalidEditError
        naming `index` (its place in a batch)."""
        if isinstance(item, Edit):
            return item
        if isinstance(item, tuple | list) and len(item) == 2:
            return cls(item[0], item[1])
        raise InvalidEditError(
            f"edit {index} is {type(item).__name__} {item!r:.80}: give Edit(prompt, target, ...) "
            "or a (prompt, target) pair"
        )


@dataclass(frozen=True, slots=True)
class EditResult:
    """What `EditMemory.add` (or `restore`) did: the stored record, the records it superseded, the
    active edits of the same question kept beside it, and active edits close to it with another answer
    (`similar`: hits scored by question-key cosine, left as they are; forget one if this edit replaces
    it)."""

    record: EditRecord
    superseded: tuple[EditRecord, ...] = ()
    conflicts: tuple[EditRecord, ...] = ()  # active edits kept beside it (policy keep_both, or restore)
    similar: tuple[SearchHit, ...] = ()

    @property
    def edit_id(self) -> str:
        return self.record.edit_id


@dataclass(frozen=True, slots=True)
class ConflictPair:
    """Two active edits of one namespace that answer one question, or two close ones, in two ways."""

    older: EditRecord
    newer: EditRecord
    score: float  # question-key cosine, the higher of the two directions
    same_question: bool  # score >= conflict.min_cosine, no identifier apart; else only close

    @property
    def kind(self) -> str:
        """'same question' or 'similar', as the CLI and the REPL print it."""
        return "same question" if self.same_question else "similar"


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Search and gate for one query: `hits` are the top-k, `admitted` those the sentinel let through
    and the backend's review kept, `declined` those the review turned away (recall/backends/review.py),
    `overridden` those a newer admitted edit of the same fact replaced (recall/retrieval/current.py).
    `view` is the part of the query the gate read when it was not the whole (its last sentence:
    recall/retrieval/views.py); hits, scores and threshold are that view's."""

    query: str
    hits: tuple[SearchHit, ...]
    admitted: tuple[SearchHit, ...]
    threshold: float
    declined: tuple[SearchHit, ...] = ()
    overridden: tuple[SearchHit, ...] = ()
    view: str | None = None

    @property
    def used_memory(self) -> bool:
        return bool(self.admitted)

    def verdict(self, hit: SearchHit) -> str:
        """What became of `hit`: admitted, declined (past the gate, turned away by the review),
        overridden (past the gate, replaced by a newer edit of its fact) or rejected (by the gate, or cut
        by top_k / max_gap)."""
        edit_id = hit.record.edit_id
        if any(h.record.edit_id == edit_id for h in self.admitted):
            return "admitted"
        if any(h.record.edit_id == edit_id for h in self.declined):
            return "declined"
        if any(h.record.edit_id == edit_id for h in self.overridden):
            return "overridden"
        return "rejected"


def id_list(edit_ids: Sequence[str], shown: int = 10) -> str:
    """Short ids, comma-separated, the first `shown` of them and a count of the rest (a weight editor
    names every active edit as possibly used)."""
    short = ", ".join(i[:8] for i in edit_ids[:shown])
    return f"{short} and {len(edit_ids) - shown} more" if len(edit_ids) > shown else short


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with its provenance: which edits shaped it and what was injected."""

    text: str
    retrieval: Retrieval  # the gate's verdicts (empty for a backend that reads no hits)
    backend: str
    injected: str = ""  # exactly what the backend added to the prompt ("" when nothing)
    latency_s: float = 0.0
    used: tuple[str, ...] = ()  # ids of the edits that shaped the answer, as the backend reports them

    @property
    def used_memory(self) -> bool:
        return bool(self.used)

    @property
    def hits(self) -> tuple[SearchHit, ...]:
        """The admitted hits the backend used (a retrieval backend's provenance, with scores)."""
        return tuple(hit for hit in self.retrieval.admitted if hit.record.edit_id in self.used)


@dataclass(frozen=True, slots=True)
class TargetScore:
    """Teacher-forced scoring of `target` after a prompt (EasyEdit's token-level view).

    target_ids: the target's token ids; predicted_ids: the argmax at each target position;
    logprobs: log p(target token) at each position. All three have the same length.
    """

    target_ids: tuple[int, ...]
    predicted_ids: tuple[int, ...]
    logprobs: tuple[float, ...] = field(default=())

    @property
    def accuracy(self) -> float:
        """Mean over target tokens of 1[argmax == label] (EasyEdit `test_prediction_acc`)."""
        if not self.target_ids:
            return 0.0
        hits = sum(p == t for p, t in zip(self.predicted_ids, self.target_ids, strict=True))
        return hits / len(self.target_ids)

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else float("nan")

    def agreement(self, other: TargetScore) -> float:
        """Share of positions whose argmax equals `other`'s (EasyEdit locality)."""
        pairs: Sequence[tuple[int, int]] = list(zip(self.predicted_ids, other.predicted_ids, strict=False))
        return sum(a == b for a, b in pairs) / len(pairs) if pairs else 0.0
