"""WeightEditor: what every locate-and-edit backend (rome, ft; memit and alphaedit next) shares. Edits
change weights in place, one after another, each computed on the weights the edits before it left, so
deltas do not commute: the backend keeps a journal.

- Each edit's delta is written to backend/<name>/<edit_id>.safetensors before `edit` returns, with its
  chain: a digest of the backend's settings and every edit up to and including this one, in order.
- `sync(active)` (open, and after a failure) resets the edited weights to the base model's and walks the
  store's active edits: while a stored delta's chain matches, it is added as stored; from the first edit
  that has none (a crash lost it, or an edit before it was forgotten) each delta is recomputed on the
  weights so far and written. The result is bitwise what a memory that only ever saw the active edits,
  in this order, holds (recomputed deltas: on the same device and thread count, which fix the order of
  a matmul's sums; stored deltas are re-added exactly anywhere): `forget`, supersede and restore are
  this replay.
- `save` (on close) also writes the edited weights with the chain of the last edit; a reopened memory
  whose active edits all match their stored chains, ending in that one, loads them instead of re-adding
  every delta (ft's dense deltas: 3.5 GB to read at 1000 edits).
- `disabled()` swaps the base weights in; everything else in the model is shared with the base model.
- A weight edit has no per-answer attribution: every answer names all active edits as possibly used,
  and says so in what it reports as injected.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from tqdm import tqdm

from memory_store import EditRecord, InvalidEditError, SearchHit
from memory_store.files import atomic_write
from recall.backends.base import BackendSwitch, Capability, Generation, GenerationConfig, ScoreRequest
from recall.errors import ArchitectureError
from recall.lm.hooks import resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import generate_ids, item_ids, prompt_ids, score_ids
from recall.lm.weights import private_copy
from recall.results import TargetScore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightDelta:
    """One edit's change to the weight of the module at `path`: left @ right (a rank-r factorisation,
    left (d_out, r), right (r, d_in)), or `left` itself (d_out, d_in) when right is None."""

    path: str
    left: torch.Tensor
    right: torch.Tensor | None = None

    def matrix(self) -> torch.Tensor:
        return self.left if self.right is None else self.left @ self.right


@dataclass
class Journal:
    """The edits the weights hold, in order: edit id -> chain, and the deltas kept in memory (without a
    folder) or on disk."""

    chains: dict[str, str] = field(default_factory=dict)
    deltas: dict[str, list[WeightDelta]] = field(default_factory=dict)


class WeightEditor(BackendSwitch):
    """Base of the locate-and-edit backends. Subclasses set name/config_class/tiny_settings, call
    `__init__` with the module paths they change, and implement `compute` (and `check`)."""

    capabilities: ClassVar[Capability] = Capability.FORGET | Capability.BATCH | Capability.EDITS_WEIGHTS

    def __init__(
        self, lm: LanguageModel, paths: Sequence[str], *, use_chat_template: bool, settings: str
    ) -> None:
        self.lm = private_copy(lm, paths, suffix=self.name)
        self.paths = list(paths)
        self.weights = {p: self._parameter(p) for p in self.paths}
        self.base = {p: w.detach().clone() for p, w in self.weights.items()}
        self.use_chat_template = use_chat_template
        self.settings = settings  # what the chain starts from: a change of settings recomputes every delta
        self.journal = Journal()
        self.records: dict[str, EditRecord] = {}  # the active edits, in the weights' order
        self.folder: Path | None = None
        self._stored: dict[str, str] = {}  # edit id -> chain of the deltas on disk (from `load`)
        self._snapshot: tuple[str, Path] | None = None  # (chain of its last edit, file) from `load`

    name: ClassVar[str]

    # ----------------------------------------------------------------- what a subclass provides
    def compute(self, record: EditRecord) -> list[WeightDelta]:
        """The deltas that make the current weights hold `record` (not yet applied)."""
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        return {"modules": ", ".join(self.paths), "edits": str(len(self.records))}

    def check(self, records: Sequence[EditRecord]) -> None:
        """Refuse an edit whose target has no tokens (subclasses add their own conditions)."""
        for record in records:
            if not self._item(record.prompt, record.target)[1]:
                raise InvalidEditError(f"the target {record.target!r} has no tokens for {self.lm.model_id}")

    # ----------------------------------------------------------------- the journal
    def edit(self, records: Sequence[EditRecord]) -> None:
        self.check(records)
        for record in records:
            self._append(record, self._chain(record))

    def forget(self, edit_ids: Sequence[str]) -> None:
        gone = set(edit_ids)
        self.sync([r for r in self.records.values() if r.edit_id not in gone])

    def clear(self) -> None:
        self.sync([])

    def sync(self, active: Sequence[EditRecord]) -> None:
        """Hold exactly `active`, in order: the saved weights when every chain matches up to them, else
        stored deltas re-added while their chains match and the rest recomputed (a progress bar when
        there is more than one)."""
        old = self.journal
        known = {**self._stored, **old.chains}  # edit id -> chain of a delta held in memory or on disk
        for edit_id in known.keys() - {r.edit_id for r in active}:
            self._delete(edit_id)
        self.journal, self.records, self._stored = Journal(), {}, {}
        if self._load_snapshot(active, known):
            return
        self._reset()
        redo: list[EditRecord] = []
        for record in active:
            chain = self._chain(record)
            if not redo and chain == known.get(record.edit_id):
                deltas = old.deltas.get(record.edit_id) or self._read(record.edit_id)
                if deltas is not None:
                    self._apply(record, chain, deltas)
                    continue
            redo.append(record)
        for record in tqdm(redo, desc=f"replaying {self.name} edits", unit="edit", disable=len(redo) < 2):
            self._append(record, self._chain(record))

    def _chain(self, record: EditRecord) -> str:
        """The chain `record` would have after the journal's current edits."""
        return _link(next(reversed(self.journal.chains.values()), self.settings), record)

    def _load_snapshot(self, active: Sequence[EditRecord], known: dict[str, str]) -> bool:
        """Take the saved weights when every active edit's known chain matches and the last is the
        snapshot's (nothing to re-add or recompute); False leaves everything to the replay."""
        if self._snapshot is None or not active:
            return False
        chains, last = {}, self.settings
        for record in active:
            last = chains[record.edit_id] = _link(last, record)
            if last != known.get(record.edit_id):
                return False
        if last != self._snapshot[0]:
            return False
        from safetensors.torch import load_file

        tensors = load_file(str(self._snapshot[1]))
        with torch.no_grad():
            for path, weight in self.weights.items():
                weight.copy_(tensors[path])
        self.journal.chains, self.records = chains, {r.edit_id: r for r in active}
        self._snapshot = None
        return True

    def _append(self, record: EditRecord, chain: str) -> None:
        deltas = self.compute(record)
        self._write(record.edit_id, chain, deltas)  # durable before the weights change
        self._apply(record, chain, deltas)

    def _apply(self, record: EditRecord, chain: str, deltas: list[WeightDelta]) -> None:
        with torch.no_grad():
            for delta in deltas:
                self.weights[delta.path].add_(delta.matrix().to(self.weights[delta.path]))
        self.journal.chains[record.edit_id] = chain
        if self.folder is None:
            self.journal.deltas[record.edit_id] = deltas
        self.records[record.edit_id] = record

    def _reset(self) -> None:
        with torch.no_grad():
            for path, weight in self.weights.items():
                weight.copy_(self.base[path])

    def _parameter(self, path: str) -> torch.nn.Parameter:
        weight = resolve_module(self.lm.model, path).weight
        if not isinstance(weight, torch.nn.Parameter):
            raise ArchitectureError(f"{path} has no weight parameter to edit")
        return weight

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Inside: the base weights (swapped in, not copied), and no edit reported as used."""
        edited = {p: w.data for p, w in self.weights.items()}
        with super().disabled():
            for path, weight in self.weights.items():
                weight.data = self.base[path]
            try:
                yield
            finally:
                for path, weight in self.weights.items():
                    weight.data = edited[path]

    # ----------------------------------------------------------------- files
    def save(self, path: Path) -> None:
        """Every delta was written when it was made; the edited weights too, for a fast reopen."""
        if not self.records:
            return
        from safetensors.torch import save_file

        tensors = {p: w.detach().cpu().contiguous() for p, w in self.weights.items()}
        chain = next(reversed(self.journal.chains.values()))
        file = path / f"{self.name}-weights.safetensors"
        atomic_write(file, lambda tmp: save_file(tensors, str(tmp), metadata={"chain": chain}))

    def load(self, path: Path) -> None:
        """Note the deltas stored under `path` (`sync` applies those whose chain still matches)."""
        from safetensors import safe_open

        self.folder = path / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        snapshot = path / f"{self.name}-weights.safetensors"
        try:
            with safe_open(str(snapshot), framework="pt") as handle:
                self._snapshot = (handle.metadata()["chain"], snapshot)
        except (OSError, ValueError, RuntimeError, KeyError):
            snapshot.unlink(missing_ok=True)  # none yet, or a torn write: the deltas are re-added
        for file in self.folder.glob("*.safetensors"):
            try:
                with safe_open(str(file), framework="pt") as handle:
                    self._stored[file.stem] = handle.metadata()["chain"]
            except (OSError, ValueError, RuntimeError, KeyError):
                file.unlink()  # a torn write: `sync` recomputes the edit if the store holds it

    def _write(self, edit_id: str, chain: str, deltas: list[WeightDelta]) -> None:
        if self.folder is None:
            return
        from safetensors.torch import save_file

        tensors = {}
        for delta in deltas:
            tensors[f"{delta.path}:left"] = delta.left.contiguous()
            if delta.right is not None:
                tensors[f"{delta.path}:right"] = delta.right.contiguous()
        file = self.folder / f"{edit_id}.safetensors"
        atomic_write(file, lambda tmp: save_file(tensors, str(tmp), metadata={"chain": chain}))

    def _read(self, edit_id: str) -> list[WeightDelta] | None:
        if self.folder is None or not (file := self.folder / f"{edit_id}.safetensors").is_file():
            return None
        from safetensors.torch import load_file

        tensors = load_file(str(file))
        return [
            WeightDelta(p, tensors[f"{p}:left"], tensors.get(f"{p}:right"))
            for p in self.paths
            if f"{p}:left" in tensors
        ]

    def _delete(self, edit_id: str) -> None:
        if self.folder is not None:
            (self.folder / f"{edit_id}.safetensors").unlink(missing_ok=True)

    # ----------------------------------------------------------------- answering
    def _item(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        return item_ids(self.lm, prompt, target, use_chat_template=self.use_chat_template)

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        ids = prompt_ids(self.lm, render(self.lm, prompt, use_chat_template=self.use_chat_template))
        text = generate_ids(self.lm, ids, gen.max_new_tokens, gen.min_new_tokens)
        if self._disabled or not self.records:
            return Generation(text)
        injected = (
            f"{len(self.records)} {self.name} edit(s) in the weights of {', '.join(self.paths)}; a weight "
            "edit has no per-answer attribution: any of them may have shaped this answer"
        )
        return Generation(text, injected, tuple(self.records))

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        return score_ids(self.lm, [self._item(r.prompt, r.target) for r in requests])


def _link(previous: str, record: EditRecord) -> str:
    """The chain of `record` after the chain `previous` (the settings for the first edit)."""
    text = "\x00".join([previous, record.edit_id, record.prompt, record.target, record.subject or ""])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
