"""EditMemory: the two flows (edit: validate, encode, resolve conflicts, then the backend and the store
in the order recall/edits.py keeps; ask: the gate (recall/retrieval/gate.py) for a retrieval backend,
then generate). It never names a backend: it reads their capabilities."""

from __future__ import annotations

import builtins
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from memory_store import EditRecord, HistoryEvent, MemoryStore, Sentinel, Status
from recall._version import __version__
from recall.backends import Capability, EditBackend, GenerationConfig, ScoreRequest
from recall.build import create_parts, open_parts
from recall.config import ConflictPolicy, RecallConfig, load_config
from recall.edits import EditWriter, prepare
from recall.errors import ConflictError, EditNotFoundError, InvalidEditError
from recall.lm.loading import LanguageModel
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore
from recall.retrieval.conflicts import conflict_pairs, neighbours
from recall.retrieval.encoder import Encoder
from recall.retrieval.gate import Gate


class EditMemory:
    """A language model plus a durable memory of edits that shape its answers."""

    def __init__(
        self,
        *,
        store: MemoryStore,
        lm: LanguageModel,
        encoder: Encoder,
        sentinel: Sentinel,
        backend: EditBackend,
        config: RecallConfig,
        owned_dir: Path | None = None,
    ) -> None:
        self.store, self.lm, self.encoder, self.sentinel = store, lm, encoder, sentinel
        self.backend, self.config = backend, config
        self._owned_dir = owned_dir  # a temporary memory deletes its directory on close
        review = backend.review if Capability.REVIEW in backend.capabilities else None
        self.gate = Gate(store, encoder, sentinel, config.retrieval, review)
        self.writer = EditWriter(store, backend)

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
        _owned: bool = False,
    ) -> EditMemory:
        """Create a new memory directory (it must not hold a memory yet). `device` ('auto', 'cpu',
        'cuda[:N]') is where the model and encoder run (default: `lm`'s, else auto); it is not stored."""
        parts = create_parts(path, config or load_config(), lm=lm, encoder=encoder, device=device)
        return cls(**vars(parts), owned_dir=Path(path) if _owned else None)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        lm: LanguageModel | None = None,
        model: str | None = None,
        device: str | None = None,
    ) -> EditMemory:
        """Open an existing memory with the model and config it was created with, on `device`.

        Raises:
            IncompatibleArtifactError: `lm`/`model` (or the encoder) differs from what the memory was
                built with.
        """
        parts = open_parts(path, lm=lm, model=model, device=device)
        try:
            memory = cls(**vars(parts))
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
        path = Path(tempfile.mkdtemp(prefix="recall-")) / "memory"
        try:
            return cls.create(path, config, lm=lm, encoder=encoder, device=device, _owned=True)
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)  # a failed create leaves nothing behind
            raise

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
        record, keys = prepare(Edit(prompt, target, subject, namespace), self.encoder, self.config)
        policy = policy or self.config.conflict.policy
        conflicts, similar = neighbours(self.store, record, keys[:1], self.config.conflict)
        if conflicts and policy == "reject":
            old = conflicts[0]
            raise ConflictError(
                f"an active edit already answers {old.prompt!r} with {old.target!r} (edit_id={old.edit_id}); "
                "forget it first, or add with policy='supersede'"
            )
        if conflicts and policy == "supersede":
            stored, *superseded = self.writer.supersede(conflicts, record, keys)
            return EditResult(stored, superseded=tuple(superseded), similar=similar)
        stored = self.writer.add([record], [keys])[0]
        return EditResult(stored, conflicts=tuple(conflicts), similar=similar)

    def add_many(
        self,
        edits: Sequence[Edit | tuple[str, str]],
        *,
        policy: ConflictPolicy | None = None,
        progress: bool = False,
    ) -> builtins.list[EditResult]:
        """Add several edits (Edit items, or (prompt, target) pairs for the default namespace). With
        'keep_both' they go in as one transaction and one encoder batch, and each result names the active
        edits of its question and the close ones (this batch's included)."""
        # Every item is checked to be an edit before any is added.
        items = [Edit.of(item, index) for index, item in enumerate(edits)]
        policy = policy or self.config.conflict.policy
        if policy != "keep_both":
            return [
                self.add(e.prompt, e.target, e.subject, e.namespace, policy=policy)
                for e in tqdm(items, desc="edits", disable=not progress)
            ]
        prepared = [prepare(e, self.encoder, self.config) for e in items]
        stored = self.writer.add([r for r, _ in prepared], [k for _, k in prepared])
        # Checked once all are in, so edits of one batch also see each other.
        return [self._beside(r, keys[:1]) for r, (_, keys) in zip(stored, prepared, strict=True)]

    def forget(self, edit_id: str) -> EditRecord:
        """Retract one edit (kept in history); the model answers as if it had never been made. A backend
        that cannot forget one edit refuses (UnsupportedOperationError) and nothing changes."""
        return self.writer.forget(edit_id, reason="forgotten")

    def restore(self, edit_id: str) -> EditResult:
        """Bring back a forgotten or superseded edit; an edit that superseded it stays active beside it
        (`conflicts`), so forget that one if the restored edit should win."""
        restored = self.writer.restore(edit_id)
        return self._beside(restored, self.store.vectors(edit_id)[:1])

    def _beside(self, record: EditRecord, question_key: np.ndarray) -> EditResult:
        """`record`, stored and kept, with the active edits of its question and those close to it."""
        conflicts, similar = neighbours(self.store, record, question_key, self.config.conflict)
        return EditResult(record, conflicts=tuple(conflicts), similar=similar)

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
        return self.gate.admit([query], namespace)[0]

    def _retrievals(
        self, queries: Sequence[str], namespace: str, use_memory: bool
    ) -> builtins.list[Retrieval]:
        """The gate's verdicts, or none (every query without hits) when the backend does not read them."""
        if use_memory and queries and Capability.USES_RETRIEVAL in self.backend.capabilities:
            return self.gate.admit(queries, namespace)
        return [Retrieval(q, (), (), float("nan")) for q in queries]

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        """Answer `query`; with no admitted edit (or use_memory=False) exactly as the base model would."""
        start = time.perf_counter()
        retrieval = self._retrievals([query], namespace, use_memory)[0]
        gen = GenerationConfig(max_new_tokens or self.config.model.max_new_tokens)
        if use_memory:
            out = self.backend.generate(query, retrieval.admitted, gen)
        else:
            with self.backend.disabled():  # the unedited model, whatever kind of backend this is
                out = self.backend.generate(query, (), gen)
        elapsed = time.perf_counter() - start
        return Answer(out.text, retrieval, self.backend.name, out.injected, elapsed, used=out.used)

    def score(
        self, query: str, target: str, namespace: str = "default", *, use_memory: bool = True
    ) -> TargetScore:
        """Teacher-forced scoring of `target` as the answer to `query` (EasyEdit token accuracy)."""
        return self.score_many([(query, target)], namespace, use_memory=use_memory)[0]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]:
        retrievals = self._retrievals([q for q, _ in pairs], namespace, use_memory)
        requests = [
            ScoreRequest(q, t.strip(), r.admitted) for (q, t), r in zip(pairs, retrievals, strict=True)
        ]
        if use_memory:
            return self.backend.score_many(requests)
        with self.backend.disabled():
            return self.backend.score_many(requests)

    # ----------------------------------------------------------------- inspection
    def get(self, edit_id: str) -> EditRecord:
        return self.store.get(edit_id)

    def find(self, id_prefix: str) -> EditRecord:
        """The one edit (any status) whose id starts with `id_prefix`."""
        prefix = id_prefix.strip().lower()
        matches = [r for r in self.store.list(namespace=None, status=None) if r.edit_id.startswith(prefix)]
        if not prefix or not matches:
            raise EditNotFoundError(f"no edit id starts with {id_prefix!r}; `list` shows the ids")
        if len(matches) > 1:
            raise InvalidEditError(f"{len(matches)} edits start with {id_prefix!r}; give more characters")
        return matches[0]

    def list(
        self, namespace: str | None = "default", status: Status | None = "active"
    ) -> builtins.list[EditRecord]:
        return self.store.list(namespace=namespace, status=status)

    def history(self, edit_id: str) -> builtins.list[HistoryEvent]:
        return self.store.history(edit_id)

    def namespaces(self) -> builtins.list[str]:
        return self.store.namespaces()

    def count(self, namespace: str | None = None) -> int:
        return self.store.count(namespace=namespace)

    @property
    def sentinel_name(self) -> str:
        return self.sentinel.name

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.store.path),
            "model": self.lm.model_id,
            "model_fingerprint": self.lm.fingerprint,
            "device": str(self.lm.device),
            "encoder": self.encoder.encoder_id,
            "encoder_fingerprint": self.encoder.fingerprint,
            "backend": self.backend.name,
            "backend_detail": self.backend.describe(),
            "sentinel": self.sentinel.name,
            "config": self.config.to_dict(),
            "recall_version": __version__,
        }

    def close(self) -> None:
        self.backend.save(self.store.path / "backend")
        self.store.close()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir.parent, ignore_errors=True)

    def __enter__(self) -> EditMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
