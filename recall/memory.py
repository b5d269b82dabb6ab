"""EditMemory: the two flows (edit: validate, encode, resolve conflicts, then the backend and the store
in the order recall/edits.py keeps; ask: the gate (recall/retrieval/gate.py) for a retrieval backend,
then generate). It never names a backend: it reads their capabilities."""

from __future__ import annotations

import builtins
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memory_store import EditRecord, HistoryEvent, Status
from recall.answering import Answering
from recall.build import MemoryParts, create_parts, memory_info, open_parts, temporary_parts
from recall.config import ConflictPolicy, RecallConfig, load_config
from recall.edits import EditWriter, find_edit, in_namespace, prepare
from recall.lm.loading import LanguageModel
from recall.queries import QueryCheck
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore
from recall.retrieval.conflicts import conflict_pairs
from recall.retrieval.encoder import Encoder
from recall.retrieval.gate import Gate


class EditMemory:
    """A language model plus a durable memory of edits that shape its answers."""

    def __init__(self, parts: MemoryParts, *, owned_dir: Path | None = None) -> None:
        self.parts = parts
        self.store, self.lm, self.encoder = parts.store, parts.lm, parts.encoder
        self.sentinel, self.backend, self.config = parts.sentinel, parts.backend, parts.config
        self._owned_dir = owned_dir  # a temporary memory deletes its directory on close
        self.gate = Gate.of(self.store, self.encoder, self.sentinel, self.backend, self.config)
        self.writer = EditWriter(self.store, self.backend, self.config.conflict)
        self.check = QueryCheck(self.lm, self.config.store.max_text_chars, self.config.model.max_new_tokens)
        self.answering = Answering(self.check, self.gate, self.backend)

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        path: str | Path,
        config: RecallConfig | None = None,
        *,
        lm: LanguageModel | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
    ) -> EditMemory:
        """Create a new memory directory (it must not hold a memory yet). `device` ('auto', 'cpu',
        'cuda[:N]') is where the model and encoder run (default: `lm`'s, else auto); it is not stored."""
        return cls(create_parts(path, config or load_config(), lm=lm, encoder=encoder, device=device))

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        lm: LanguageModel | None = None,
        model: str | None = None,
        device: str | None = None,
        read_only: bool = False,
    ) -> EditMemory:
        """Open an existing memory with the model and config it was created with, on `device`
        (IncompatibleArtifactError: `lm`/`model` or the encoder is not what it was built with);
        `read_only` writes no file, for storage that cannot be written (edits raise ReadOnlyStoreError)."""
        parts = open_parts(path, lm=lm, model=model, device=device, read_only=read_only)
        try:
            memory = cls(parts)
            memory.writer.sync()  # the store is the truth: repair what a crash left the backend without
        except BaseException:
            parts.store.close()
            raise
        return memory

    @classmethod
    def open_or_create(
        cls, path: str | Path, *, model: str | None = None, backend: str | None = None, device: str = "auto"
    ) -> EditMemory:
        if (Path(path) / "manifest.json").is_file():
            return cls.open(path, model=model, device=device)
        overrides = [f"model.name={model}"] if model else []
        return cls.create(path, load_config(backend=backend, overrides=overrides), device=device)

    @classmethod
    def temporary(
        cls,
        config: RecallConfig | None = None,
        *,
        lm: LanguageModel | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
    ) -> EditMemory:
        """A throw-away memory in a temporary directory, deleted by `close`."""
        parts = temporary_parts(config or load_config(), lm=lm, encoder=encoder, device=device)
        return cls(parts, owned_dir=parts.store.path)

    # ----------------------------------------------------------------- the edit flow
    def add(
        self,
        prompt: str,
        target: str,
        subject: str | None = None,
        namespace: str = "default",
        *,
        policy: ConflictPolicy | None = None,
    ) -> EditResult:
        """Teach one fact; durable when this returns. An edit of an already-edited question supersedes it
        (policy 'supersede', the default), raises ConflictError ('reject') or sits beside it ('keep_both')."""
        [(record, keys)] = prepare(
            [Edit(prompt, target, subject, namespace)], self.encoder, self.config, self.lm
        )
        return self.writer.add_with_policy(record, keys, policy)

    def add_many(
        self,
        edits: Sequence[Edit | tuple[str, str]],
        *,
        policy: ConflictPolicy | None = None,
        progress: bool = False,
    ) -> builtins.list[EditResult]:
        """Add several edits (Edit items, or (prompt, target) pairs for the default namespace), all or
        nothing: one batch with 'keep_both' or when none meets an active edit of its question (nor another
        of the batch), else one by one under the policy (EditWriter.add_many)."""
        items = [Edit.of(item, index) for index, item in enumerate(edits)]  # all checked before any add
        prepared = prepare(items, self.encoder, self.config, self.lm)  # keys encoded in one batch
        return self.writer.add_many(prepared, policy, progress)

    def forget(self, edit_id: str, namespace: str | None = None) -> EditRecord:
        """Retract one edit (kept in history; EditNotFoundError unless in `namespace`, when given): the model
        answers as if it had never been made; a backend that cannot forget one refuses, changing nothing."""
        return self.writer.forget(self.get(edit_id, namespace).edit_id, reason="forgotten")

    def restore(self, edit_id: str, namespace: str | None = None) -> EditResult:
        """Bring back a forgotten or superseded edit; an edit that superseded it stays active beside it
        (`conflicts`), so forget that one if the restored edit should win."""
        record = self.writer.restore(self.get(edit_id, namespace).edit_id)
        return self.writer.beside(record, self.store.vectors(edit_id)[:1])

    def conflicts(
        self, namespace: str | None = "default", *, progress: bool = False
    ) -> builtins.list[ConflictPair]:
        """Pairs of active edits that answer one question (or two close ones) in two ways, most alike
        first (None: every namespace, each on its own). Forget the wrong one of each."""
        return conflict_pairs(self.store, self.config.conflict, namespace, progress=progress)

    def reset(self) -> None:
        """Retract every active edit of every namespace (evaluation blocks start from empty)."""
        self.writer.clear(reason="reset")

    # ----------------------------------------------------------------- the ask flow
    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        """Search the namespace and gate the hits; `admitted` is what a retrieval backend would use."""
        return self.retrieve_many([query], namespace)[0]

    def retrieve_many(self, queries: Sequence[str], namespace: str = "default") -> builtins.list[Retrieval]:
        """`retrieve` for each query, encoded, searched and reviewed together."""
        return self.gate.admit([self.check.query(q, namespace) for q in queries], namespace)

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer `query`; with no admitted edit (or use_memory=False) exactly as the base model would. The
        answer takes model.max_new_tokens, or what an admitted target needs; `on_text` gets it as it grows."""
        return self.answering.answer([query], namespace, [max_new_tokens], use_memory, on_text)[0]

    def ask_many(
        self,
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
        use_memory: bool = True,
    ) -> builtins.list[Answer]:
        """`ask` for each query (its own max_new_tokens), decoded together where the backend can."""
        return self.answering.answer(queries, namespace, max_new_tokens or [None] * len(queries), use_memory)

    def score(
        self, query: str, target: str, namespace: str = "default", *, use_memory: bool = True
    ) -> TargetScore:
        """Teacher-forced scoring of `target` as the answer to `query` (EasyEdit token accuracy)."""
        return self.score_many([(query, target)], namespace, use_memory=use_memory)[0]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]:
        return self.answering.score_many(pairs, namespace, use_memory)

    def score_and_ask(
        self,
        pairs: Sequence[tuple[str, str]],
        queries: Sequence[str],
        namespace: str = "default",
        *,
        max_new_tokens: Sequence[int | None] | None = None,
    ) -> tuple[builtins.list[TargetScore], builtins.list[Answer]]:
        """`score_many(pairs)` and `ask_many(queries)` with memory, in one pass where the backend can."""
        return self.answering.score_and_answer(pairs, queries, namespace, max_new_tokens)

    # ----------------------------------------------------------------- inspection
    def get(self, edit_id: str, namespace: str | None = None) -> EditRecord:
        """The edit `edit_id`; EditNotFoundError unless it is in `namespace` (when given)."""
        return in_namespace(self.store.get(edit_id), namespace)

    def find(self, id_prefix: str, namespace: str | None = None) -> EditRecord:
        """The one edit (any status) whose id starts with `id_prefix` (4+ characters), in `namespace`."""
        return find_edit(self.store, id_prefix, namespace)

    def list(
        self, namespace: str | None = "default", status: Status | None = "active"
    ) -> builtins.list[EditRecord]:
        return self.store.list(namespace=namespace, status=status)

    def history(self, edit_id: str, namespace: str | None = None) -> builtins.list[HistoryEvent]:
        return self.store.history(self.get(edit_id, namespace).edit_id)

    def namespaces(self) -> builtins.list[str]:
        return self.store.namespaces()

    def count(self, namespace: str | None = None) -> int:
        return self.store.count(namespace=namespace)

    @property
    def sentinel_name(self) -> str:
        return self.sentinel.name

    def info(self) -> dict[str, Any]:
        """What a report stamps: path, model, encoder, backend (and its describe()), sentinel, config."""
        return memory_info(self.parts)

    def close(self) -> None:
        try:
            if not self.store.read_only:
                self.backend.save(self.store.path / "backend")
        finally:  # a failed save must not leave the memory locked
            self.store.close()
            if self._owned_dir is not None:
                shutil.rmtree(self._owned_dir.parent, ignore_errors=True)

    def __enter__(self) -> EditMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
