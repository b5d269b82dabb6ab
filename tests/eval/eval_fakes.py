"""FakeMemory: a MemoryInterface with no model, whose every answer can be worked out by hand.

Tokens are words; a word's id is its crc32, so ids are stable across runs. The "base model" knows the
answers in `base` (keyed by exact prompt) and predicts the unknown id -1 elsewhere. Retrieval scores a
record by word overlap (Jaccard) between the query and the record's prompt; the sentinel admits hits
scoring at least `threshold`. With memory on, the top admitted record's target is what gets predicted.
Every call is appended to `calls`, so tests can check the order of operations.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import zlib
from collections.abc import Sequence
from typing import Any, Literal

from memory_store import EditRecord, HistoryEvent, SearchHit, Status
from memory_store.records import EventKind
from recall.errors import EditNotFoundError
from recall.interface import AsksOneByOne
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore

UNKNOWN = -1
WRONG = -2
LIKELY = -0.1  # mean logprob of a predicted target
UNLIKELY = -5.0


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_ids(text: str) -> tuple[int, ...]:
    return tuple(zlib.crc32(w.encode()) for w in words(text))


def aligned(prediction: str | None, length: int) -> tuple[int, ...]:
    """The ids a model "predicts" at `length` target positions when it believes `prediction`."""
    ids = token_ids(prediction) if prediction is not None else ()
    return tuple(ids[i] if i < len(ids) else UNKNOWN for i in range(length))


def overlap(a: str, b: str) -> float:
    wa, wb = set(words(a)), set(words(b))
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


class FakeMemory(AsksOneByOne):
    """An oracle-ish memory: right whenever retrieval finds the edit; see the module docstring."""

    def __init__(self, base: dict[str, str] | None = None, threshold: float = 0.5) -> None:
        self.base = dict(base or {})
        self.threshold = threshold
        self.records: list[EditRecord] = []
        self.retracted: list[EditRecord] = []
        self.calls: list[tuple[Any, ...]] = []
        self.size_at_test: list[int] = []  # number of stored records at each retrieve call

    # --- writing -------------------------------------------------------------------------------
    def add(
        self,
        prompt: str,
        target: str,
        subject: str | None = None,
        namespace: str = "default",
        *,
        policy: Literal["supersede", "reject", "keep_both"] | None = None,
    ) -> EditResult:
        self.calls.append(("add", prompt, policy))
        record = EditRecord(prompt=prompt, target=target, subject=subject, namespace=namespace)
        self.records.append(record)
        return EditResult(record=record)

    def add_many(
        self,
        edits: Sequence[Edit],
        *,
        policy: Literal["supersede", "reject", "keep_both"] | None = None,
        progress: bool = False,
    ) -> list[EditResult]:
        self.calls.append(("add_many", len(edits), policy))
        results = []
        for edit in edits:
            record = EditRecord(
                prompt=edit.prompt, target=edit.target, subject=edit.subject, namespace=edit.namespace
            )
            self.records.append(record)
            results.append(EditResult(record=record))
        return results

    def reset(self) -> None:
        self.calls.append(("reset",))
        self.records.clear()

    # --- reading -------------------------------------------------------------------------------
    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        self.calls.append(("retrieve", query))
        self.size_at_test.append(len(self.records))
        return self._retrieve(query, namespace)

    def _retrieve(self, query: str, namespace: str) -> Retrieval:
        scored = sorted(
            (
                (overlap(query, r.prompt), i, r)
                for i, r in enumerate(self.records)
                if r.namespace == namespace
            ),
            key=lambda t: (-t[0], t[1]),
        )
        hits = tuple(SearchHit(record=r, score=s, rank=k) for k, (s, _, r) in enumerate(scored[:3]))
        admitted = tuple(h for h in hits if h.score >= self.threshold)
        return Retrieval(query=query, hits=hits, admitted=admitted, threshold=self.threshold)

    def believed(self, query: str, namespace: str, use_memory: bool) -> str | None:
        """What the model would answer: the admitted edit's target, else the base answer."""
        if use_memory:
            retrieval = self._retrieve(query, namespace)
            if retrieval.admitted:
                return retrieval.admitted[0].record.target
        return self.base.get(query)

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> list[TargetScore]:
        self.calls.append(("score_many", len(pairs), use_memory))
        scores = []
        for query, target in pairs:
            ids = token_ids(target)
            predicted = aligned(self.believed(query, namespace, use_memory), len(ids))
            logprobs = tuple(LIKELY if p == t else UNLIKELY for p, t in zip(predicted, ids, strict=True))
            scores.append(TargetScore(target_ids=ids, predicted_ids=predicted, logprobs=logprobs))
        return scores

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        self.calls.append(("ask", query))
        text = self.believed(query, namespace, use_memory) or "I do not know."
        return Answer(
            text=f" {text}.\nMore words follow here.",
            retrieval=self._retrieve(query, namespace),
            backend="fake",
        )

    # --- the rest of MemoryInterface: the harness never calls these, the REPL does --------------
    sentinel_name = "fake"

    def forget(self, edit_id: str, namespace: str | None = None) -> EditRecord:
        record = self.find(edit_id, namespace)
        self.records.remove(record)
        self.retracted.append(dataclasses.replace(record, status="retracted"))
        return self.retracted[-1]

    def restore(self, edit_id: str, namespace: str | None = None) -> EditResult:
        record = self.find(edit_id, namespace)
        self.retracted.remove(record)
        self.records.append(dataclasses.replace(record, status="active"))
        return EditResult(record=self.records[-1])

    def list(
        self, namespace: str | None = "default", status: Status | None = "active"
    ) -> builtins.list[EditRecord]:
        pool = {"active": self.records, "retracted": self.retracted, None: self.records + self.retracted}
        return [r for r in pool.get(status, []) if namespace is None or r.namespace == namespace]

    def conflicts(self, namespace: str | None = "default") -> builtins.list[ConflictPair]:
        active = self.list(namespace)
        return [
            ConflictPair(a, b, 1.0, True)
            for i, a in enumerate(active)
            for b in active[i + 1 :]
            if a.prompt == b.prompt and a.namespace == b.namespace and a.target != b.target
        ]

    def history(self, edit_id: str, namespace: str | None = None) -> builtins.list[HistoryEvent]:
        record = self.find(edit_id, namespace)
        kinds: builtins.list[EventKind] = ["add"] if record.status == "active" else ["add", "retract"]
        return [HistoryEvent(edit_id=edit_id, kind=kind, at=record.created_at) for kind in kinds]

    def find(self, id_prefix: str, namespace: str | None = None) -> EditRecord:
        pool = self.records + self.retracted
        matches = [r for r in pool if r.edit_id.startswith(id_prefix) and namespace in (None, r.namespace)]
        if len(matches) != 1:
            raise EditNotFoundError(f"{len(matches)} edits start with {id_prefix!r}")
        return matches[0]

    def namespaces(self) -> builtins.list[str]:
        return sorted({r.namespace for r in self.records})

    def count(self, namespace: str | None = None) -> int:
        return len(self.list(namespace))

    def close(self) -> None:
        self.calls.append(("close",))

    def info(self) -> dict[str, Any]:
        return {
            "model": "fake-model",
            "model_fingerprint": "0123456789abcdef",
            "encoder": "fake-encoder",
            "encoder_fingerprint": "fedcba9876543210",
            "backend": "fake",
            "config": {"threshold": self.threshold},
            "recall_version": "0.0.test",
        }


class WrongMemory(FakeMemory):
    """Gets everything wrong: wrong tokens, a decoy record always retrieved and admitted, and the
    original answer preferred on edit prompts while the new one is preferred everywhere else."""

    def __init__(self, base: dict[str, str] | None = None) -> None:
        super().__init__(base)
        self.decoy = EditRecord(prompt="decoy", target="decoy")

    def _retrieve(self, query: str, namespace: str) -> Retrieval:
        hit = SearchHit(record=self.decoy, score=1.0, rank=0)
        return Retrieval(query=query, hits=(hit,), admitted=(hit,), threshold=0.0)

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> list[TargetScore]:
        if not use_memory:
            return super().score_many(pairs, namespace, use_memory=False)
        self.calls.append(("score_many", len(pairs), use_memory))
        targets = {r.target for r in self.records}
        scores = []
        for query, target in pairs:
            ids = token_ids(target)
            about_an_edit = any(overlap(query, r.prompt) >= 0.5 for r in self.records)
            likely = (target in targets) != about_an_edit
            logprob = LIKELY if likely else UNLIKELY
            scores.append(
                TargetScore(target_ids=ids, predicted_ids=(WRONG,) * len(ids), logprobs=(logprob,) * len(ids))
            )
        return scores

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        self.calls.append(("ask", query))
        return Answer(text="zzz", retrieval=self._retrieve(query, namespace), backend="wrong")


class ReviewingMemory(FakeMemory):
    """A backend that reviews what its gate admits: admitted hits scoring under `sure` are declined, so
    neither retrieval nor scoring uses them (recall/backends/review.py turns edits away the same way)."""

    def __init__(self, base: dict[str, str] | None = None, sure: float = 0.75) -> None:
        super().__init__(base)
        self.sure = sure

    def _retrieve(self, query: str, namespace: str) -> Retrieval:
        gated = super()._retrieve(query, namespace)
        kept = tuple(h for h in gated.admitted if h.score >= self.sure)
        declined = tuple(h for h in gated.admitted if h.score < self.sure)
        return dataclasses.replace(gated, admitted=kept, declined=declined)


class DriftingMemory(FakeMemory):
    """A base model that changes once edits exist (a leaky parameter editor): predicts WRONG everywhere.

    Locality must then be 0, which it is only if the pre-edit predictions were taken before any edit.
    """

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> list[TargetScore]:
        if not self.records:
            return super().score_many(pairs, namespace, use_memory=use_memory)
        self.calls.append(("score_many", len(pairs), use_memory))
        return [
            TargetScore(target_ids=token_ids(t), predicted_ids=(WRONG,) * len(token_ids(t)), logprobs=())
            for _, t in pairs
        ]
