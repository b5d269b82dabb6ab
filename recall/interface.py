"""MemoryInterface: what the evaluation harness (recall/eval) and the REPL (recall/repl) drive. It is
written once, here; recall.memory.EditMemory satisfies it, and so do the tests' fakes."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Protocol

from memory_store import EditRecord, HistoryEvent, Status
from recall.config import ConflictPolicy
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore


class MemoryInterface(Protocol):
    """The public methods of EditMemory that its callers outside the package core use."""

    @property
    def sentinel_name(self) -> str: ...

    def add(
        self,
        prompt: str,
        target: str,
        subject: str | None = None,
        namespace: str = "default",
        *,
        policy: ConflictPolicy | None = None,
    ) -> EditResult: ...

    def add_many(
        self, edits: Sequence[Edit], *, policy: ConflictPolicy | None = None, progress: bool = False
    ) -> builtins.list[EditResult]: ...

    def forget(self, edit_id: str, namespace: str | None = None) -> EditRecord: ...

    def restore(self, edit_id: str, namespace: str | None = None) -> EditResult: ...

    def reset(self) -> None: ...

    def retrieve(self, query: str, namespace: str = "default") -> Retrieval: ...

    def retrieve_many(
        self, queries: Sequence[str], namespace: str = "default"
    ) -> builtins.list[Retrieval]: ...

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer: ...

    def ask_many(
        self,
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
        use_memory: bool = True,
    ) -> builtins.list[Answer]: ...

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]: ...

    def score_and_ask(
        self,
        pairs: Sequence[tuple[str, str]],
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
    ) -> tuple[builtins.list[TargetScore], builtins.list[Answer]]: ...

    def list(
        self, namespace: str | None = "default", status: Status | None = "active"
    ) -> builtins.list[EditRecord]: ...

    def conflicts(self, namespace: str | None = "default") -> builtins.list[ConflictPair]: ...

    def history(self, edit_id: str, namespace: str | None = None) -> builtins.list[HistoryEvent]: ...

    def find(self, id_prefix: str, namespace: str | None = None) -> EditRecord: ...

    def namespaces(self) -> builtins.list[str]: ...

    def count(self, namespace: str | None = None) -> int: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class AsksOneByOne:
    """`ask_many` and `retrieve_many` as `ask` and `retrieve` for each query in turn, and `score_and_ask`
    as `score_many` then `ask_many`, for a memory (a test double) that decodes nothing together;
    EditMemory decodes batches (recall/answering.py)."""

    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        raise NotImplementedError

    def retrieve_many(self, queries: Sequence[str], namespace: str = "default") -> builtins.list[Retrieval]:
        return [self.retrieve(q, namespace) for q in queries]

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        raise NotImplementedError

    def ask_many(
        self,
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
        use_memory: bool = True,
    ) -> builtins.list[Answer]:
        lengths = max_new_tokens or [None] * len(queries)
        return [
            self.ask(q, namespace, max_new_tokens=n, use_memory=use_memory)
            for q, n in zip(queries, lengths, strict=True)
        ]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]:
        raise NotImplementedError

    def score_and_ask(
        self,
        pairs: Sequence[tuple[str, str]],
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
    ) -> tuple[builtins.list[TargetScore], builtins.list[Answer]]:
        scores = self.score_many(pairs, namespace) if pairs else []
        return scores, self.ask_many(queries, namespace, max_new_tokens=max_new_tokens)
