"""The edit flow: records prepared from edits, an edit found by its id prefix, and the writes, in the
one order that keeps store and backend agreeing: validate and encode; ask the backend's capabilities
and `check` before anything is written; change the backend; then commit the store. A refusal leaves
both untouched. A backend failure, or a store failure after the backend changed, is repaired with
`backend.sync(active records)`: the store is the truth. A crash between the two writes is repaired the
same way when the memory is next opened (EditMemory.open)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar, cast, get_args

import numpy as np
from tqdm import tqdm

from memory_store import (
    MIN_ID_PREFIX,
    EditRecord,
    MemoryStore,
    ReadOnlyStoreError,
    SearchHit,
    StorageError,
    StoreError,
    validate_namespace,
    validate_record,
)
from recall.backends import Capability, EditBackend
from recall.config import ConflictConfig, ConflictPolicy, RecallConfig
from recall.errors import (
    ConfigError,
    ConflictError,
    EditNotFoundError,
    InvalidEditError,
    UnsupportedOperationError,
)
from recall.lm.loading import LanguageModel
from recall.lm.prompts import statement
from recall.lm.special import find_special, special_message
from recall.results import Edit, EditResult
from recall.retrieval.conflicts import neighbours, restated
from recall.retrieval.current import KEPT_BESIDE
from recall.retrieval.descriptors import key_texts
from recall.retrieval.encoder import Encoder
from recall.retrieval.identifiers import name_other_things

T = TypeVar("T")
logger = logging.getLogger(__name__)
POLICIES: tuple[str, ...] = get_args(ConflictPolicy)


def prepare(
    edits: Sequence[Edit], encoder: Encoder, config: RecallConfig, lm: LanguageModel
) -> list[tuple[EditRecord, np.ndarray]]:
    """The record each edit becomes (text stripped, statement built, validated, free of `lm`'s special
    tokens; every edit checked before any is encoded) and its keys (n_keys, dim), all encoded in one
    batch."""
    records = [_record(edit, config, lm) for edit in edits]
    if not records:
        return []
    texts = [key_texts(record, config.retrieval.keys, config.retrieval.last_sentence) for record in records]
    vectors = encoder.encode_keys([text for group in texts for text in group])  # (sum of n_keys, dim)
    bounds = np.cumsum([0, *(len(group) for group in texts)])
    return [(record, vectors[a:b]) for record, a, b in zip(records, bounds[:-1], bounds[1:], strict=True)]


def _record(edit: Edit, config: RecallConfig, lm: LanguageModel) -> EditRecord:
    for name, value in (("prompt", edit.prompt), ("target", edit.target)):  # stripped below
        if not isinstance(value, str):
            raise InvalidEditError(f"{name} expected text, received {type(value).__name__} {value!r:.80}")
    if edit.subject is not None and not isinstance(edit.subject, str):
        raise InvalidEditError(f"subject expected text or None, received {type(edit.subject).__name__}")
    prompt, target = edit.prompt.strip(), edit.target.strip()
    subject = edit.subject.strip() if edit.subject else None
    record = EditRecord(
        prompt=prompt,
        target=target,
        subject=subject,
        namespace=edit.namespace,
        statement=statement(prompt, target),
    )
    validate_record(record, max_text_chars=config.store.max_text_chars)
    for name, text in (("prompt", prompt), ("target", target), ("subject", subject or "")):
        token = find_special(lm, text)
        if token is not None:
            raise InvalidEditError(special_message(name, token))
    return record


def find_edit(store: MemoryStore, id_prefix: str, namespace: str | None = None) -> EditRecord:
    """The one edit (any status) whose id starts with `id_prefix` (at least MIN_ID_PREFIX characters),
    in `namespace` (None: any namespace); what the CLI and REPL accept."""
    prefix = id_prefix.strip().lower() if isinstance(id_prefix, str) else ""
    if len(prefix) < MIN_ID_PREFIX:
        raise InvalidEditError(
            f"an edit id prefix needs at least {MIN_ID_PREFIX} characters, received {id_prefix!r}; "
            "`list` shows the ids"
        )
    matches = [r for r in store.list(namespace=namespace, status=None) if r.edit_id.startswith(prefix)]
    where = "" if namespace is None else f" in namespace {namespace!r}"
    if not matches:
        raise EditNotFoundError(f"no edit id starts with {id_prefix!r}{where}; `list` shows the ids")
    if len(matches) > 1:
        raise InvalidEditError(f"{len(matches)} edits start with {id_prefix!r}{where}; give more characters")
    return matches[0]


def in_namespace(record: EditRecord, namespace: str | None) -> EditRecord:
    """`record`, if it is in `namespace` (None: any); else EditNotFoundError, as if it did not exist."""
    if namespace is not None and validate_namespace(namespace) != record.namespace:
        raise EditNotFoundError(f"no edit {record.edit_id!r} in namespace {namespace!r}")
    return record


def check_policy(policy: object) -> ConflictPolicy:
    """`policy` if it is a conflict policy; ConfigError (never a silent keep_both) otherwise."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ConfigError(f"policy expected one of {POLICIES}, received {policy!r}")
    return cast(ConflictPolicy, policy)


def kept_beside(record: EditRecord, policy: ConflictPolicy) -> EditRecord:
    """`record`, marked when added with policy keep_both: it stands beside older edits of its fact
    instead of overriding them when both are admitted (recall/retrieval/current.py)."""
    if policy != "keep_both":
        return record
    return dataclasses.replace(record, meta={**record.meta, "policy": KEPT_BESIDE})


class EditWriter:
    """Backend-then-store writes for one memory."""

    def __init__(self, store: MemoryStore, backend: EditBackend, rule: ConflictConfig) -> None:
        self.store, self.backend, self.rule = store, backend, rule
        # One write at a time in this process (other processes are kept out by the store's lock): two
        # threads adding one question would both supersede the same old edit.
        self.lock = threading.RLock()

    def add_with_policy(
        self, record: EditRecord, keys: np.ndarray, policy: ConflictPolicy | None = None
    ) -> EditResult:
        """Add one record under the conflict policy (None: conflict.policy): an active edit of the same
        question is superseded ('supersede'), refused ('reject': ConflictError) or kept beside it
        ('keep_both')."""
        policy = check_policy(self.rule.policy if policy is None else policy)
        with self.lock:
            return self._add_with_policy(kept_beside(record, policy), keys, policy)

    def meets(
        self, record: EditRecord, question_key: np.ndarray
    ) -> tuple[list[EditRecord], tuple[SearchHit, ...]]:
        """(conflicts, similar) as `neighbours` finds them, plus the edits that restate `record`'s fact
        (`restated`): "Who runs Acme?" restates "The CEO of Acme is", whose keys sit below min_cosine."""
        conflicts, similar = neighbours(self.store, record, question_key, self.rule)
        again = restated(self.store, self.backend, record, question_key, self.rule.restated_cosine)
        known = {r.edit_id for r in conflicts}
        again = [r for r in again if r.edit_id not in known]
        ids = {r.edit_id for r in again}
        return conflicts + again, tuple(h for h in similar if h.record.edit_id not in ids)

    def _add_with_policy(self, record: EditRecord, keys: np.ndarray, policy: ConflictPolicy) -> EditResult:
        conflicts, similar = self.meets(record, keys[:1])
        if conflicts and policy == "reject":
            old = conflicts[0]
            raise ConflictError(
                f"an active edit already answers {old.prompt!r} with {old.target!r} (edit_id={old.edit_id}); "
                "forget it first, or add with policy='supersede'"
            )
        if conflicts and policy == "supersede":
            stored, *superseded = self.supersede(conflicts, record, keys)
            return EditResult(stored, superseded=tuple(superseded), similar=similar)
        stored = self.add([record], [keys])[0]
        return EditResult(stored, conflicts=tuple(conflicts), similar=similar)

    def add_many(
        self,
        prepared: Sequence[tuple[EditRecord, np.ndarray]],
        policy: ConflictPolicy | None,
        progress: bool,
    ) -> list[EditResult]:
        """All or nothing: one batch with 'keep_both' or when no record meets an active edit of its
        question (nor another of the batch); else ConflictError before any write ('reject'), or one by
        one, each superseding the edits of its question, undone (retracted, the superseded restored,
        all in history) if one fails."""
        policy = check_policy(self.rule.policy if policy is None else policy)
        if not prepared:
            return []
        prepared = [(kept_beside(record, policy), keys) for record, keys in prepared]
        with self.lock:
            # keep_both adds side by side whatever meets what: no clash to look for
            clash = None if policy == "keep_both" else self._first_clash(prepared)
            if clash is None:
                return self.add_batch(prepared)  # one batch (memit and alphaedit solve it together)
            if policy == "reject":
                new, old = clash
                raise ConflictError(
                    f"{new.prompt!r} meets the edit {old.prompt!r} => {old.target!r}; nothing was added: "
                    "forget it first, or add with policy='supersede'"
                )
            self.require(Capability.FORGET, "forget one edit, so a new edit cannot supersede an old one",
                         "add them with policy='keep_both'")  # fmt: skip
            self.backend.check([r for r, _ in prepared])
            done: list[EditResult] = []
            try:
                for record, keys in tqdm(prepared, desc="edits", disable=not progress):
                    done.append(self._add_with_policy(record, keys, policy))
            except BaseException as error:
                self._undo(done, f"add_many undone ({type(error).__name__})")
                raise
            return done

    def _undo(self, done: Sequence[EditResult], reason: str) -> None:
        """Retract the edits `done` added and restore those they superseded, newest first."""
        for result in reversed(done):
            self.store.retract(result.edit_id, reason)
            for old in result.superseded:
                self.store.restore(old.edit_id, reason)
        self.sync()  # the backend follows the store

    def add_batch(self, prepared: Sequence[tuple[EditRecord, np.ndarray]]) -> list[EditResult]:
        """Add records side by side (policy keep_both) in one transaction; each result names the active
        edits of its question and the close ones, checked once all are in (so this batch's too)."""
        stored = self.add([r for r, _ in prepared], [k for _, k in prepared])
        return [self.beside(r, keys[:1]) for r, (_, keys) in zip(stored, prepared, strict=True)]

    def _first_clash(
        self, prepared: Sequence[tuple[EditRecord, np.ndarray]]
    ) -> tuple[EditRecord, EditRecord] | None:
        """The first (record, edit of its question) among the active edits and the batch itself
        (question keys at or above conflict.min_cosine, same namespace, no identifier apart), else None:
        then every policy adds the batch side by side, as one batch."""
        for record, keys in prepared:
            same = self.meets(record, keys[:1])[0]
            if same:
                return record, same[0]
        questions = np.concatenate([keys[:1] for _, keys in prepared]).astype(np.float64)  # (n, dim)
        questions /= np.linalg.norm(questions, axis=1, keepdims=True).clip(min=1e-12)
        cosines = questions @ questions.T
        records = [r for r, _ in prepared]
        for i, j in itertools.combinations(range(len(records)), 2):
            if (
                cosines[i, j] >= self.rule.min_cosine
                and records[i].namespace == records[j].namespace
                and not name_other_things(records[i].prompt, records[j].prompt)
            ):
                return records[j], records[i]
        return None

    def beside(self, record: EditRecord, question_key: np.ndarray) -> EditResult:
        """`record`, stored and kept, with the active edits of its question and those close to it."""
        conflicts, similar = self.meets(record, question_key)
        return EditResult(record, conflicts=tuple(conflicts), similar=similar)

    def require(self, capability: Capability, doing: str, instead: str) -> None:
        """UnsupportedOperationError, before any write, when the backend lacks `capability`."""
        if capability not in self.backend.capabilities:
            raise UnsupportedOperationError(f"the {self.backend.name} backend cannot {doing}; {instead}")

    def add(self, records: Sequence[EditRecord], keys: Sequence[np.ndarray]) -> list[EditRecord]:
        """Store new records (one transaction) after the backend took them."""
        self.backend.check(records)
        if len(records) > 1 and Capability.BATCH not in self.backend.capabilities:
            return [self.add([r], [k])[0] for r, k in zip(records, keys, strict=True)]
        if len(records) == 1:
            return self._ordered(
                lambda: self.backend.edit(records), lambda: [self.store.add(records[0], keys[0])]
            )
        return self._ordered(lambda: self.backend.edit(records), lambda: self.store.add_many(records, keys))

    def supersede(self, old: Sequence[EditRecord], record: EditRecord, keys: np.ndarray) -> list[EditRecord]:
        """Replace the active edits `old` (the first supersedes, the rest are retracted) by `record`;
        returns [stored record, *the old records as they are now]."""
        self.require(
            Capability.FORGET,
            "forget one edit, so a new edit cannot supersede an old one",
            "add it with policy='keep_both' (both stay active) or policy='reject'",
        )
        self.backend.check([record])

        def backend_step() -> None:
            self.backend.forget([r.edit_id for r in old])
            self.backend.edit([record])

        def store_step() -> list[EditRecord]:
            stored = self.store.supersede(old[0].edit_id, record, keys, reason="new edit for the question")
            retired = [self.store.get(old[0].edit_id)]
            reason = f"superseded by {stored.edit_id}"
            retired += [self.store.retract(r.edit_id, reason=reason) for r in old[1:]]
            return [stored, *retired]

        return self._ordered(backend_step, store_step)

    def forget(self, edit_id: str, reason: str) -> EditRecord:
        with self.lock:
            return self._forget(edit_id, reason)

    def _forget(self, edit_id: str, reason: str) -> EditRecord:
        record = self.store.get(edit_id)  # EditNotFoundError before anything changes
        if record.status != "active":
            return self.store.retract(edit_id, reason=reason)  # the store's own error for the transition
        self.require(
            Capability.FORGET,
            "forget one edit",
            "reset the memory (clear every edit), or open a new memory and add the edits to keep",
        )
        return self._ordered(
            lambda: self.backend.forget([edit_id]), lambda: self.store.retract(edit_id, reason)
        )

    def restore(self, edit_id: str) -> EditRecord:
        with self.lock:
            return self._restore(edit_id)

    def _restore(self, edit_id: str) -> EditRecord:
        record = self.store.get(edit_id)
        if record.status == "active":
            return self.store.restore(edit_id, reason="restored")  # the store's own error
        self.backend.check([record])
        # The backend takes the edit back at its place in the store's order (where a reopened memory's
        # `sync` puts it): for an in-model backend whose state depends on the order of edits (a weight
        # editor's journal, GRACE's splits), restoring is then as if the edit had never been forgotten.
        everything = self.store.list(namespace=None, status=None)
        active = [r for r in everything if r.status == "active" or r.edit_id == edit_id]
        return self._ordered(
            lambda: self.backend.sync(active), lambda: self.store.restore(edit_id, "restored")
        )

    def clear(self, reason: str) -> None:
        """Retract every active edit of every namespace."""
        with self.lock:
            active = self.store.list(namespace=None, status="active")
            self._ordered(
                self.backend.clear, lambda: [self.store.retract(r.edit_id, reason=reason) for r in active]
            )

    def sync(self) -> None:
        """Make the backend hold exactly the store's active edits."""
        with self.lock:
            self.backend.sync(self.store.list(namespace=None, status="active"))

    def _ordered(self, backend_step: Callable[[], object], store_step: Callable[[], T]) -> T:
        if self.store.read_only:  # refused before the backend changes
            raise ReadOnlyStoreError(f"memory at {str(self.store.path)!r} is open read-only; nothing changed")
        try:
            backend_step()
            return store_step()
        except BaseException as error:
            try:
                self.sync()  # undo what the backend took that the store did not commit
            except Exception as repair:  # the first error is the one to report
                logger.warning(
                    "could not bring the backend back to the store (%s); the next open will", repair
                )
            if isinstance(error, OSError) and not isinstance(error, StoreError):
                raise StorageError(
                    f"the {self.backend.name} backend could not write its files ({error}); nothing was "
                    "changed: free disk space or check the storage, then try again"
                ) from error
            raise
