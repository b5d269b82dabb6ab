"""EditMemory: the two flows (edit: validate, resolve conflicts, encode, store; ask: encode, search, gate,
generate). It never names a backend: every backend sees the same records and hits."""

from __future__ import annotations

import builtins
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

import recall
from memory_store import EditRecord, HistoryEvent, MemoryStore, SearchHit, Sentinel, validate_record
from recall.admission import asked_alone, close_to_best
from recall.backends import EditBackend, GenerationConfig, ReviewsHits, ScoreRequest
from recall.components import build_backend, build_sentinel, shared_encoder, shared_lm
from recall.config import ConflictPolicy, RecallConfig, config_from_dict, load_config
from recall.conflicts import conflict_pairs, neighbours
from recall.descriptors import key_texts
from recall.encoder import Encoder
from recall.errors import ConflictError, EditNotFoundError, IncompatibleArtifactError, InvalidEditError
from recall.models import LanguageModel
from recall.prompts import statement
from recall.results import Answer, ConflictPair, Edit, EditResult, Retrieval, TargetScore

logger = logging.getLogger(__name__)


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
        config = config or load_config()
        device = device or (str(lm.device) if lm is not None else "auto")
        lm = lm or shared_lm(config.model.name, device)
        encoder = encoder or shared_encoder(config.encoder.name, config.encoder.batch_size, device)
        store = MemoryStore.open(
            path,
            dim=encoder.dim,
            encoder_id=encoder.encoder_id,
            create=True,
            index=config.store.index,
            hnsw_min_rows=config.store.hnsw_min_rows,
            max_text_chars=config.store.max_text_chars,
        )
        try:
            extra = {"model": lm.model_id, "model_fingerprint": lm.fingerprint, "config": config.to_dict()}
            store.update_manifest({**extra, "recall_version": recall.__version__})
            sentinel = build_sentinel(config, store.sentinel_dir, encoder)
            sentinel.save(store.sentinel_dir)
            backend = build_backend(config, lm)
        except BaseException:
            store.close()  # a bad config must not leave the store open (and locked)
            raise
        return cls(
            store=store,
            lm=lm,
            encoder=encoder,
            sentinel=sentinel,
            backend=backend,
            config=config,
            owned_dir=Path(path) if _owned else None,
        )

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
            IncompatibleArtifactError: `lm`/`model` differs from the model the memory was built for.
        """
        store = MemoryStore.open(path)
        try:
            extra = store.manifest.get("extra", {})
            config = config_from_dict(extra.get("config", {}))
            wanted = lm.model_id if lm is not None else model
            if wanted is not None and wanted != extra.get("model"):
                raise IncompatibleArtifactError(
                    f"memory {str(path)!r} was built for model {extra.get('model')!r}, not {wanted!r}; "
                    "open it without a model or create a new memory for that model"
                )
            device = device or (str(lm.device) if lm is not None else "auto")
            lm = lm or shared_lm(str(extra.get("model", config.model.name)), device)
            encoder = shared_encoder(config.encoder.name, config.encoder.batch_size, device)
            if encoder.encoder_id != store.encoder_id:
                raise IncompatibleArtifactError(
                    f"memory {str(path)!r} was built with encoder {store.encoder_id!r}, "
                    f"not {encoder.encoder_id!r}"
                )
        except BaseException:
            store.close()
            raise
        sentinel = build_sentinel(config, store.sentinel_dir, encoder)
        backend = build_backend(config, lm)
        backend.load(store.path / "backend")
        return cls(store=store, lm=lm, encoder=encoder, sentinel=sentinel, backend=backend, config=config)

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
        record, keys = self._prepare(Edit(prompt, target, subject, namespace))
        policy = policy or self.config.conflict.policy
        conflicts, similar = neighbours(self.store, record, keys[:1], self.config.conflict)
        if conflicts and policy == "reject":
            old = conflicts[0]
            raise ConflictError(
                f"an active edit already answers {old.prompt!r} with {old.target!r} (edit_id={old.edit_id}); "
                "forget it first, or add with policy='supersede'"
            )
        if conflicts and policy == "supersede":
            stored = self.store.supersede(
                conflicts[0].edit_id, record, keys, reason="new edit for the question"
            )
            superseded = [self.store.get(conflicts[0].edit_id)]
            for extra in conflicts[1:]:
                superseded.append(self.store.retract(extra.edit_id, reason=f"superseded by {stored.edit_id}"))
            self.backend.forget([r.edit_id for r in superseded])
            self.backend.edit([stored])
            return EditResult(stored, superseded=tuple(superseded), similar=similar)
        stored = self.store.add(record, keys)
        self.backend.edit([stored])
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
        prepared = [self._prepare(e) for e in items]
        stored = self.store.add_many([r for r, _ in prepared], [k for _, k in prepared])
        self.backend.edit(stored)
        # Checked once all are in, so edits of one batch also see each other.
        return [self._beside(r, keys[:1]) for r, (_, keys) in zip(stored, prepared, strict=True)]

    def forget(self, edit_id: str) -> EditRecord:
        """Retract one edit (kept in history); the model answers as if it had never been made."""
        record = self.store.retract(edit_id, reason="forgotten")
        self.backend.forget([edit_id])
        return record

    def restore(self, edit_id: str) -> EditResult:
        """Bring back a forgotten or superseded edit; an edit that superseded it stays active beside it
        (`conflicts`), so forget that one if the restored edit should win."""
        restored = self.store.restore(edit_id, reason="restored")
        self.backend.edit([restored])
        return self._beside(restored, self.store.vectors(edit_id)[:1])

    def _beside(self, record: EditRecord, question_key: Any) -> EditResult:
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
        active = self.store.list(namespace=None, status="active")
        for record in active:
            self.store.retract(record.edit_id, reason="reset")
        self.backend.forget([r.edit_id for r in active])

    def _prepare(self, edit: Edit) -> tuple[EditRecord, Any]:
        if not isinstance(edit.prompt, str) or not isinstance(edit.target, str):
            raise InvalidEditError(f"prompt and target must be text, got {edit.prompt!r} and {edit.target!r}")
        prompt, target = edit.prompt.strip(), edit.target.strip()
        subject = edit.subject.strip() if edit.subject else None
        record = EditRecord(
            prompt=prompt,
            target=target,
            subject=subject,
            namespace=edit.namespace,
            statement=statement(prompt, target),
        )
        validate_record(record, max_text_chars=self.config.store.max_text_chars)
        return record, self.encoder.encode_keys(key_texts(record, self.config.retrieval.keys))

    # ----------------------------------------------------------------- the ask flow
    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        """Search the namespace and gate the hits; `admitted` is what the backend would use."""
        return self._retrieve_many([query], namespace)[0]

    def _retrieve_many(self, queries: Sequence[str], namespace: str) -> builtins.list[Retrieval]:
        vectors = self.encoder.encode_queries(list(queries))  # (n, dim)
        k = max(self.config.retrieval.top_k, 3)
        results = self.store.search(vectors, k=k, namespace=namespace)
        gated: builtins.list[tuple[SearchHit, ...]] = []
        # Rows whose admitted hits go to review: none of them asks the query word for word.
        open_rows: builtins.list[int] = []
        for row, (query, vector, hits) in enumerate(zip(queries, vectors, results, strict=True)):
            asked = asked_alone(query, hits)
            admitted = asked or self.sentinel.admit(vector, hits)
            gated.append(
                tuple(close_to_best(admitted, self.config.retrieval.max_gap)[: self.config.retrieval.top_k])
            )
            if gated[-1] and not asked and not self._sure(gated[-1][0], vector):
                open_rows.append(row)
        reviewed = self._review(queries, gated, open_rows)
        return [
            Retrieval(
                query,
                tuple(hits),
                kept,
                self.sentinel.threshold(vector),
                tuple(hit for hit in admitted if hit not in kept),
            )
            for query, vector, hits, admitted, kept in zip(
                queries, vectors, results, gated, reviewed, strict=True
            )
        ]

    def _sure(self, best: SearchHit, vector: Any) -> bool:
        """Whether the gate admitted `best` by retrieval.review_within or more (then it skips review)."""
        within = self.config.retrieval.review_within
        return within is not None and best.score - self.sentinel.threshold(vector) >= within

    def _review(
        self, queries: Sequence[str], gated: Sequence[tuple[SearchHit, ...]], open_rows: Sequence[int]
    ) -> builtins.list[tuple[SearchHit, ...]]:
        """The gated hits, those of `open_rows` as the backend's review left them, where it has one. An
        edit asked word for word is not reviewed (`asked_alone`), nor one the gate is sure of (`_sure`)."""
        reviewed = builtins.list(gated)
        if open_rows and isinstance(self.backend, ReviewsHits):
            verdicts = self.backend.review([queries[i] for i in open_rows], [gated[i] for i in open_rows])
            for i, kept in zip(open_rows, verdicts, strict=True):
                reviewed[i] = kept
        return reviewed

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
        retrieval = self.retrieve(query, namespace) if use_memory else Retrieval(query, (), (), float("nan"))
        gen = GenerationConfig(max_new_tokens or self.config.model.max_new_tokens)
        out = self.backend.generate(query, retrieval.admitted, gen)
        return Answer(out.text, retrieval, self.backend.name, out.injected, time.perf_counter() - start)

    def score(
        self, query: str, target: str, namespace: str = "default", *, use_memory: bool = True
    ) -> TargetScore:
        """Teacher-forced scoring of `target` as the answer to `query` (EasyEdit token accuracy)."""
        return self.score_many([(query, target)], namespace, use_memory=use_memory)[0]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> builtins.list[TargetScore]:
        hits: builtins.list[tuple[SearchHit, ...]] = [()] * len(pairs)
        if use_memory and pairs:
            hits = [r.admitted for r in self._retrieve_many([q for q, _ in pairs], namespace)]
        requests = [ScoreRequest(q, t.strip(), h) for (q, t), h in zip(pairs, hits, strict=True)]
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

    def list(self, namespace: str | None = "default", status: Any = "active") -> builtins.list[EditRecord]:
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
            "sentinel": self.sentinel.name,
            "config": self.config.to_dict(),
            "recall_version": recall.__version__,
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
