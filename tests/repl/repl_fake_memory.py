"""FakeMemory: EditMemory's REPL-facing API in pure Python (word-overlap retrieval, no torch, no disk)."""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from memory_store import EditRecord, HistoryEvent, SearchHit
from recall.errors import EditNotFoundError, InvalidEditError
from recall.interface import AsksOneByOne
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore

BASE_ANSWER = "I do not know."
THRESHOLD = 0.5
SUPERSEDE_SIMILARITY = 0.8
SIMILAR_SIMILARITY = 0.5  # below SUPERSEDE_SIMILARITY with another target: reported, left active


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def similarity(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


class FakeMemory(AsksOneByOne):
    """Retrieval by word overlap; the answer is the top admitted edit's target, else BASE_ANSWER."""

    sentinel_name = "fixed"

    def __init__(self, ids: Iterable[str] | None = None) -> None:
        # ids 1a2babcabc..., 1a2cabcabc...: distinct from the 4th hex character on (ids= forces clashes)
        self._ids: Iterator[str] = (
            iter(ids) if ids is not None else (f"{n:04x}" + "abc" * 9 + "d" for n in itertools.count(0x1A2B))
        )
        self.records: dict[str, EditRecord] = {}
        self.events: dict[str, list[HistoryEvent]] = {}
        self.fail_next: BaseException | None = None  # raised by the next ask()
        self.closed = False
        self.asked: list[tuple[str, str, bool]] = []

    def _event(self, edit_id: str, kind: str, reason: str, other: str | None = None) -> None:
        event = HistoryEvent(edit_id=edit_id, kind=kind, at=time.time(), reason=reason, other_id=other)  # type: ignore[arg-type]
        self.events.setdefault(edit_id, []).append(event)

    def add(
        self,
        prompt: str,
        target: str,
        subject: str | None = None,
        namespace: str = "default",
        *,
        policy: str | None = None,
    ) -> EditResult:
        if not prompt.strip() or not target.strip():
            raise InvalidEditError("prompt and target must be non-empty")
        old = [
            r
            for r in self.list(namespace)
            if similarity(r.prompt, prompt) >= SUPERSEDE_SIMILARITY and r.target != target
        ]
        record = EditRecord(
            prompt=prompt,
            target=target,
            subject=subject,
            namespace=namespace,
            edit_id=next(self._ids),
            supersedes=old[0].edit_id if old else None,
        )
        self.records[record.edit_id] = record
        self._event(record.edit_id, "add", "added")
        for o in old:
            self.records[o.edit_id] = dataclasses.replace(o, status="superseded")
            self._event(o.edit_id, "supersede", "superseded by a conflicting edit", record.edit_id)
        return EditResult(record=record, superseded=tuple(old), similar=self._similar(record))

    def _similar(self, record: EditRecord) -> tuple[SearchHit, ...]:
        scored = [(similarity(r.prompt, record.prompt), r) for r in self.list(record.namespace)]
        return tuple(
            SearchHit(record=r, score=s, rank=i)
            for i, (s, r) in enumerate(scored)
            if r.edit_id != record.edit_id
            and SIMILAR_SIMILARITY <= s < SUPERSEDE_SIMILARITY
            and r.target != record.target
        )

    def conflicts(self, namespace: str | None = "default") -> builtins.list[ConflictPair]:
        active = self.list(namespace)  # in id order, which is creation order here
        return [
            ConflictPair(a, b, s, s >= SUPERSEDE_SIMILARITY)
            for i, a in enumerate(active)
            for b in active[i + 1 :]
            if a.namespace == b.namespace
            and a.target != b.target
            and (s := similarity(a.prompt, b.prompt)) >= SIMILAR_SIMILARITY
        ]

    def restore(self, edit_id: str, namespace: str | None = None) -> EditResult:
        record = self.find(edit_id, namespace)
        if record.status == "active":
            raise InvalidEditError(f"edit {edit_id} is active")
        self.records[edit_id] = record = dataclasses.replace(record, status="active")
        self._event(edit_id, "restore", "restored")
        conflicts = tuple(
            r
            for r in self.list(record.namespace)
            if r.edit_id != edit_id and similarity(r.prompt, record.prompt) >= SUPERSEDE_SIMILARITY
        )
        return EditResult(record=record, conflicts=conflicts, similar=self._similar(record))

    def forget(self, edit_id: str, namespace: str | None = None) -> EditRecord:
        record = self.find(edit_id, namespace)
        if record.status == "retracted":
            raise InvalidEditError(f"edit {edit_id} is already retracted")
        self.records[edit_id] = dataclasses.replace(record, status="retracted")
        self._event(edit_id, "retract", "forgotten by the user")
        return self.records[edit_id]

    def add_many(
        self, edits: Sequence[Edit], *, policy: str | None = None, progress: bool = False
    ) -> builtins.list[EditResult]:
        return [self.add(e.prompt, e.target, e.subject, e.namespace, policy=policy) for e in edits]

    def reset(self) -> None:
        for record in self.list(None):
            self.forget(record.edit_id)

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]:
        """A word is a token (its crc32): the prediction is the answer `ask` would give."""
        scores = []
        for query, target in pairs:
            ids = tuple(zlib.crc32(w.encode()) for w in sorted(_words(target)))  # one per distinct word
            admitted = self.retrieve(query, namespace).admitted if use_memory else ()
            said = _words(admitted[0].record.target if admitted else BASE_ANSWER)
            predicted = tuple(
                i if w in said else -1 for i, w in zip(ids, sorted(_words(target)), strict=True)
            )
            scores.append(TargetScore(target_ids=ids, predicted_ids=predicted))
        return scores

    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        scored = sorted(
            ((similarity(query, r.prompt), r) for r in self.list(namespace)), key=lambda p: -p[0]
        )[:3]
        hits = tuple(SearchHit(record=r, score=s, rank=i) for i, (s, r) in enumerate(scored))
        return Retrieval(
            query=query,
            hits=hits,
            admitted=tuple(h for h in hits if h.score >= THRESHOLD)[:1],
            threshold=THRESHOLD,
        )

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        self.asked.append((query, namespace, use_memory))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if "slowly" in query:
            time.sleep(30)
        retrieval = self.retrieve(query, namespace) if use_memory else Retrieval(query, (), (), THRESHOLD)
        if retrieval.admitted:
            record = retrieval.admitted[0].record
            injected = f"[New fact] {record.prompt} {record.target}\n[Question]"
            return Answer(
                text=f" {record.target}.\n",
                retrieval=retrieval,
                backend="fake",
                injected=injected,
                latency_s=0.042,
                used=(record.edit_id,),
            )
        return Answer(text=BASE_ANSWER, retrieval=retrieval, backend="fake", latency_s=0.042)

    def list(
        self, namespace: str | None = "default", status: str | None = "active"
    ) -> builtins.list[EditRecord]:
        return [
            r
            for r in self.records.values()
            if namespace in (None, r.namespace) and status in (None, r.status)
        ]

    def history(self, edit_id: str, namespace: str | None = None) -> builtins.list[HistoryEvent]:
        self.find(edit_id, namespace)
        return list(self.events[edit_id])

    def find(self, id_prefix: str, namespace: str | None = None) -> EditRecord:
        matches = [
            r for i, r in self.records.items() if i.startswith(id_prefix) and namespace in (None, r.namespace)
        ]
        if not matches:
            raise EditNotFoundError(f"no edit id starts with {id_prefix!r}")
        if len(matches) > 1:
            raise InvalidEditError(
                f"edit id prefix {id_prefix!r} is ambiguous ({len(matches)} edits); type more characters"
            )
        return matches[0]

    def namespaces(self) -> builtins.list[str]:
        return sorted({r.namespace for r in self.records.values()})

    def count(self, namespace: str | None = None) -> int:
        return len(self.list(namespace))

    def info(self) -> dict[str, Any]:
        return {
            "model": "fake-lm",
            "model_fingerprint": "0" * 16,
            "encoder": "fake-words",
            "backend": "fake",
            "config": {},
            "recall_version": "0",
            "path": "/tmp/fake-memory",
        }

    def close(self) -> None:
        self.closed = True
