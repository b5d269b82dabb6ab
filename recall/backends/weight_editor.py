"""WeightEditor: what every locate-and-edit backend (rome, ft, memit, alphaedit) shares. Edits change
weights in place, one entry after another, each computed on the weights the entries before it left, so
changes do not commute: the backend keeps a journal. An entry is one edit (rome, ft) or one add_many
batch (`batched`: memit, alphaedit solve a batch together).

- Each entry's change is written to backend/<name>/<first edit id>.safetensors before `edit` returns,
  with its edit ids and its chain: a digest of the backend's settings and every edit up to and including
  the entry's, in order and grouped as made.
- `sync(active)` (open, and after a failure) resets the edited weights to the base model's and walks the
  store's active edits, grouped in the entries they were made in (a batch that lost an edit is solved
  again without it): while a stored entry's chain and edits match, its change is added as stored; from
  the first that does not (a crash lost it, or an edit before it was forgotten) each change is
  recomputed on the weights so far and written. The result is bitwise what a memory that only ever saw
  the active edits, in this order and these batches, holds (recomputed changes: on the same device and
  thread count, which fix the order of a matmul's sums; stored ones are re-added exactly anywhere):
  `forget`, supersede and restore are this replay.
- `save` (on close) also writes the edited weights (and what a subclass remembers: `memo`) with the
  chain of the last entry; a reopened memory whose entries all match their stored chains, ending in that
  one, loads them instead of re-adding every change (ft's dense deltas: 3.5 GB to read at 1000 edits).
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
from recall.backends.base import BackendSwitch, Capability, Generation, GenerationConfig, ScoreRequest
from recall.backends.state_files import read_state, write_state
from recall.errors import ArchitectureError
from recall.lm.generation import generate_batch, generate_ids
from recall.lm.hooks import resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import item_ids, prompt_ids, score_ids
from recall.lm.weights import private_copy
from recall.results import TargetScore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightDelta:
    """One change to the weight of the module at `path`: left @ right (a rank-r factorisation, left
    (d_out, r), right (r, d_in)), or `left` itself (d_out, d_in) when right is None."""

    path: str
    left: torch.Tensor
    right: torch.Tensor | None = None

    def matrix(self) -> torch.Tensor:
        return self.left if self.right is None else self.left @ self.right


@dataclass(frozen=True)
class Change:
    """What one journal entry adds: its deltas, and the keys an editor must remember of it (alphaedit:
    per module path, the entry's keys (n, d_in) read on the weights it left)."""

    deltas: list[WeightDelta]
    keys: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One journal entry: the edits made together (one, or an add_many batch for a batched editor), the
    chain after them, and the change itself while it is held in memory (a memory without a folder)."""

    edit_ids: tuple[str, ...]
    chain: str
    change: Change | None = None


class WeightEditor(BackendSwitch):
    """Base of the locate-and-edit backends. Subclasses set name/config_class/tiny_settings (and
    `batched`: one entry per add_many batch instead of one per edit), call `__init__` with the module
    paths they change, and implement `compute` (and `check`)."""

    capabilities: ClassVar[Capability] = Capability.FORGET | Capability.BATCH | Capability.EDITS_WEIGHTS
    batched: ClassVar[bool] = False

    def __init__(
        self, lm: LanguageModel, paths: Sequence[str], *, use_chat_template: bool, settings: str
    ) -> None:
        self.lm = private_copy(lm, paths, suffix=self.name)
        self.paths = list(paths)
        self.weights = {p: self._parameter(p) for p in self.paths}
        self.base = {p: w.detach().clone() for p, w in self.weights.items()}
        self.use_chat_template = use_chat_template
        self.settings = settings  # what the chain starts from: a change of settings recomputes every delta
        self.journal: dict[str, Entry] = {}  # first edit id -> entry, in the weights' order
        self.records: dict[str, EditRecord] = {}  # the active edits, in the weights' order
        self.folder: Path | None = None
        self._stored: dict[str, Entry] = {}  # first edit id -> (ids, chain) of an entry on disk (`load`)
        self._snapshot: tuple[str, Path] | None = None  # (chain of its last entry, file) from `load`

    name: ClassVar[str]

    # ----------------------------------------------------------------- what a subclass provides
    def compute(self, records: Sequence[EditRecord]) -> Change:
        """The change that makes the current weights hold `records` (one record unless `batched`), not
        yet applied: the weights must be as they were when it returns."""
        raise NotImplementedError

    def absorb(self, change: Change) -> None:
        """Take note of an applied change's keys (alphaedit's running sum); `reset` forgets them."""

    def reset(self) -> None:
        """Back to the base model's weights (and, in subclasses, nothing remembered of any edit)."""
        with torch.no_grad():
            for path, weight in self.weights.items():
                weight.copy_(self.base[path])

    def memo(self) -> dict[str, torch.Tensor]:
        """What a subclass remembers of the edits besides the weights, saved in the snapshot."""
        return {}

    def recall_memo(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take back what `memo` saved (the snapshot's other tensors)."""

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
        for unit in [list(records)] if self.batched else [[r] for r in records]:
            self._append(unit, self._chain(unit))

    def forget(self, edit_ids: Sequence[str]) -> None:
        gone = set(edit_ids)
        self.sync([r for r in self.records.values() if r.edit_id not in gone])

    def clear(self) -> None:
        self.sync([])

    def sync(self, active: Sequence[EditRecord]) -> None:
        """Hold exactly `active`, in order, in the entries they were made in (less the edits no longer
        active: a batch that lost one is solved again without it): the saved weights when every chain
        matches up to them, else stored changes re-added while their chains match and the rest
        recomputed (a progress bar when there is more than one)."""
        known = {**self._stored, **self.journal}  # first edit id -> an entry held in memory or on disk
        units = _units(active, known)
        kept = {unit[0].edit_id: _ids(unit) for unit in units}
        for key, entry in known.items():  # stale, or to be solved again: deleted before anything else
            if kept.get(key) != entry.edit_ids:
                self._delete(key)
        self.journal, self.records, self._stored = {}, {}, {}
        if self._load_snapshot(units, known):
            return
        self.reset()
        redo: list[list[EditRecord]] = []
        for unit in units:
            chain = self._chain(unit)
            stored = known.get(unit[0].edit_id)
            if not redo and stored is not None and stored.chain == chain and stored.edit_ids == _ids(unit):
                change = stored.change or self._read(unit[0].edit_id)
                if change is not None:
                    self._apply(unit, chain, change)
                    continue
            redo.append(unit)
        total = sum(map(len, redo))
        with tqdm(total=total, desc=f"replaying {self.name} edits", unit="edit", disable=total < 2) as bar:
            for unit in redo:
                self._append(unit, self._chain(unit))
                bar.update(len(unit))

    def _chain(self, unit: Sequence[EditRecord]) -> str:
        """The chain `unit` would have after the journal's current entries."""
        last = next(reversed(self.journal.values()), None)
        return _link(self.settings if last is None else last.chain, unit)

    def _load_snapshot(self, units: list[list[EditRecord]], known: dict[str, Entry]) -> bool:
        """Take the saved weights when every unit's known entry matches and the last is the snapshot's
        (nothing to re-add or recompute); False leaves everything to the replay."""
        if self._snapshot is None or not units:
            return False
        journal, last = {}, self.settings
        for unit in units:
            last = _link(last, unit)
            entry = known.get(unit[0].edit_id)
            if entry is None or entry.chain != last or entry.edit_ids != _ids(unit):
                return False
            journal[unit[0].edit_id] = Entry(_ids(unit), last, entry.change)
        if last != self._snapshot[0]:
            return False
        state = read_state(self._snapshot[1])
        if state is None:
            return False
        tensors = state[0]
        with torch.no_grad():
            for path, weight in self.weights.items():
                weight.copy_(tensors.pop(path))
        self.recall_memo(tensors)
        self.journal, self.records = journal, {r.edit_id: r for unit in units for r in unit}
        self._snapshot = None
        return True

    def _append(self, unit: Sequence[EditRecord], chain: str) -> None:
        change = self.compute(unit)
        self._write(unit, chain, change)  # durable before the weights change
        self._apply(unit, chain, change)

    def _apply(self, unit: Sequence[EditRecord], chain: str, change: Change) -> None:
        with torch.no_grad():
            for delta in change.deltas:
                self.weights[delta.path].add_(delta.matrix().to(self.weights[delta.path]))
        self.absorb(change)
        self.journal[unit[0].edit_id] = Entry(_ids(unit), chain, change if self.folder is None else None)
        self.records.update((r.edit_id, r) for r in unit)

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
        """Every change was written when it was made; the edited weights too, for a fast reopen."""
        if not self.journal:
            return
        tensors = {p: w.detach().cpu() for p, w in self.weights.items()}
        tensors.update(self.memo())
        chain = next(reversed(self.journal.values())).chain
        write_state(path / f"{self.name}-weights.safetensors", tensors, {"chain": chain})

    def load(self, path: Path) -> None:
        """Note the entries stored under `path` (`sync` applies those whose chain still matches)."""
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
                    meta = handle.metadata()
                # an entry written before batches had its one edit id as the file's name only
                ids = tuple(meta.get("edits", file.stem).split(","))
                self._stored[file.stem] = Entry(ids, meta["chain"])
            except (OSError, ValueError, RuntimeError, KeyError):
                file.unlink()  # a torn write: `sync` recomputes the edits if the store holds them

    def _write(self, unit: Sequence[EditRecord], chain: str, change: Change) -> None:
        if self.folder is None:
            return
        tensors = {}
        for delta in change.deltas:
            tensors[f"{delta.path}:left"] = delta.left
            if delta.right is not None:
                tensors[f"{delta.path}:right"] = delta.right
        tensors.update((f"{p}:keys", k) for p, k in change.keys.items())
        meta = {"chain": chain, "edits": ",".join(_ids(unit))}
        write_state(self.folder / f"{unit[0].edit_id}.safetensors", tensors, meta)

    def _read(self, key: str) -> Change | None:
        if self.folder is None or not (file := self.folder / f"{key}.safetensors").is_file():
            return None
        state = read_state(file)  # None when damaged: the unit is computed again
        if state is None:
            return None
        tensors = state[0]
        deltas = [
            WeightDelta(p, tensors[f"{p}:left"], tensors.get(f"{p}:right"))
            for p in self.paths
            if f"{p}:left" in tensors
        ]
        return Change(deltas, {p: tensors[f"{p}:keys"] for p in self.paths if f"{p}:keys" in tensors})

    def _delete(self, key: str) -> None:
        if self.folder is not None:
            (self.folder / f"{key}.safetensors").unlink(missing_ok=True)

    # ----------------------------------------------------------------- answering
    def _item(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        return item_ids(self.lm, prompt, target, use_chat_template=self.use_chat_template)

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        return self._generation(generate_ids(self.lm, self._prompt_ids(prompt), gen))

    def generate_many(
        self, prompts: Sequence[str], hits: Sequence[Sequence[SearchHit]], gens: Sequence[GenerationConfig]
    ) -> list[Generation]:
        texts = generate_batch(self.lm, [self._prompt_ids(p) for p in prompts], gens)
        return [self._generation(text) for text in texts]

    def _prompt_ids(self, prompt: str) -> list[int]:
        return prompt_ids(self.lm, render(self.lm, prompt, use_chat_template=self.use_chat_template))

    def _generation(self, text: str) -> Generation:
        """The answer, naming every edit in the weights (none inside `disabled()`)."""
        if self._disabled or not self.records:
            return Generation(text)
        injected = (
            f"{len(self.records)} {self.name} edit(s) in the weights of {', '.join(self.paths)}; a weight "
            "edit has no per-answer attribution: any of them may have shaped this answer"
        )
        return Generation(text, injected, tuple(self.records))

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        return score_ids(self.lm, [self._item(r.prompt, r.target) for r in requests])


def _ids(unit: Sequence[EditRecord]) -> tuple[str, ...]:
    return tuple(r.edit_id for r in unit)


def _units(active: Sequence[EditRecord], known: dict[str, Entry]) -> list[list[EditRecord]]:
    """The active edits in the entries they were made in: consecutive edits of one known entry stay
    together (less those no longer active); an edit of no known entry is an entry of its own."""
    entry_of = {edit_id: key for key, entry in known.items() for edit_id in entry.edit_ids}
    units: list[list[EditRecord]] = []
    last: str | None = None
    for record in active:
        key = entry_of.get(record.edit_id)
        if key is not None and key == last:
            units[-1].append(record)
        else:
            units.append([record])
        last = key
    return units


def _link(previous: str, unit: Sequence[EditRecord]) -> str:
    """The chain of `unit` after the chain `previous` (the settings for the first entry); for one edit,
    the chain entries had before batches."""
    parts = [previous]
    for record in unit:
        parts += [record.edit_id, record.prompt, record.target, record.subject or ""]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
