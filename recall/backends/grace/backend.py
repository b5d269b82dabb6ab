"""GraceConfig + GraceBackend (METHODS.md §3): a GRACE codebook adaptor at one layer's MLP output
projection, in a private copy of that module. Each edit trains a value that replaces the layer's output
at its last prompt token; at inference the layer's input at a token selects the nearest key, and its
value replaces the output there when the input lies inside the key's ε-ball.

- `grace` (faithful mode): the ε-balls decide, re-keyed on each generated token (replace_last).
- `grace_retrieval`: recall's retrieval and sentinel decide; the admitted edit's value replaces the
  output at the last prompt token (GRACE's balls admit almost no paraphrase).

Each value is trained alone (the codebook off, its init seeded by the edit's text), so the codebook is a
pure function of the ordered active edits: forget and sync rebuild it exactly. Every edit's key, value and
label are written durably to backend/grace/<edit_id>.safetensors before `edit` returns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from memory_store import EditRecord, SearchHit
from recall.backends.base import (
    BackendConfig,
    BackendSwitch,
    Capability,
    Generation,
    GenerationConfig,
    ScoreRequest,
)
from recall.backends.grace.codebook import Codebook, Entry, build
from recall.backends.grace.training import Steps, ValueTask, train_values
from recall.backends.state_files import read_state, write_state
from recall.errors import ConfigError, InvalidEditError
from recall.lm.generation import generate_ids
from recall.lm.hooks import edited_module, resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import end_of_turn_id, item_ids, prompt_ids, score_ids
from recall.lm.split import StemCache, common_stem
from recall.lm.weights import private_copy
from recall.results import TargetScore

ENTRY_DIR = "grace"
Fixed = tuple[int, list[Entry]]  # a position and the entries whose values may go there
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraceConfig(BackendConfig):
    """Knobs of the grace backends (METHODS.md §3; the preset says why each value)."""

    name: str = "grace"
    layer: int = -8  # decoder layer whose MLP output projection is wrapped; negative counts from the end
    eps_init: float = 3.0  # initial ball radius (Euclidean, in the layer input's units)
    n_iter: int = 50  # at most this many optimizer steps per value
    init: Literal["cold", "warm"] = "cold"  # cold: uniform [0, 1) (GRACE's default); warm: current output
    optimizer: Literal["adam", "rprop"] = "rprop"  # GRACE's Adam, or Rprop (training.py says why)
    lr: float = 2.0  # Adam's learning rate, or Rprop's first step
    # A value stops training once every target token is the argmax and the mean loss is below this
    # (0: always n_iter steps, as EasyEdit does).
    stop_loss: float = 0.3
    candidates: int = 256  # tokens per target position a training step projects onto (0: all; training.py)
    # Train the value to end the answer too (the chat's end-of-turn token after the target): generation
    # stops after the new answer instead of running on (GRACE trains the target only: false).
    end_answer: bool = False
    # grace_retrieval: which admitted edit's value is used. first: the top hit's; key: of the admitted
    # edits, the one whose GRACE key is nearest the question's own activation (retrieval shortlists,
    # GRACE's distance decides among edits of one subject).
    pick: Literal["first", "key"] = "first"
    use_chat_template: bool = True
    batch_size: int = 16  # edits trained together (add_many, sync), and the teacher-forced scoring batch

    def __post_init__(self) -> None:
        if self.eps_init <= 0 or self.lr <= 0 or self.n_iter < 1 or self.stop_loss < 0 or self.batch_size < 1:
            raise ConfigError(
                "backend.eps_init and backend.lr must be > 0, backend.n_iter and backend.batch_size >= 1 and "
                f"backend.stop_loss >= 0; got eps_init={self.eps_init}, lr={self.lr}, n_iter={self.n_iter}, "
                f"batch_size={self.batch_size}, stop_loss={self.stop_loss}"
            )

    @property
    def steps(self) -> Steps:
        return Steps(self.init, self.optimizer, self.lr, self.n_iter, self.stop_loss, self.candidates)


class GraceBackend(BackendSwitch):
    """Faithful GRACE: the codebook's ε-balls decide where a value replaces the layer's output."""

    name: ClassVar[str] = "grace"
    config_class: ClassVar[type[BackendConfig]] = GraceConfig
    capabilities: ClassVar[Capability] = Capability.FORGET | Capability.BATCH | Capability.EDITS_WEIGHTS
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        "encoder.name": "hashing",
        "sentinel.min_cosine": 0.5,
        "backend.layer": 1,
        "backend.n_iter": 20,
    }
    keyed_by_balls: ClassVar[bool] = True  # False: only the values retrieval chose are applied

    def __init__(self, config: GraceConfig, lm: LanguageModel) -> None:
        self.config = config
        self.layer, self.path = edited_module(lm.model, lm.model_id, "mlp_out", config.layer)
        self.lm = private_copy(lm, [self.path], suffix="grace")  # owns only the wrapped module
        self.raw = not (config.use_chat_template and lm.has_chat_template)
        # What every rendered prompt starts with (the chat template's system turn): its KV is made once.
        self.stem = StemCache(self.lm, common_stem(self.lm, use_chat_template=config.use_chat_template))
        # end_answer: the value also teaches the token that ends the answer (a chat's end of turn)
        end = end_of_turn_id(lm) if config.end_answer and not self.raw else None
        self._answer_end = [end] if end is not None else []
        self.entries: dict[str, Entry] = {}  # in codebook order
        self.codebook = Codebook(config.eps_init)
        self.folder: Path | None = None  # where entries are written (set by `load`)
        self._starts: list[int] | None = None  # per row, the first position keyed (scoring)
        self._fixed: list[Fixed | None] | None = None  # per row: (position, candidate entries)
        self._picked: list[str | None] = []  # per row, the edit whose value `_replace_fixed` used
        self._fired: list[tuple[int, float]] = []  # (entry, distance) of the current call
        resolve_module(self.lm.model, self.path).register_forward_hook(self._replace)

    # ----------------------------------------------------------------- the hook
    def _replace(self, _module: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> Any:
        """Swap the output (B, T, d_out) at keyed positions for codebook values."""
        if self._disabled:
            return None
        if self._fixed is not None:
            return self._replace_fixed(output, inputs[0], self._fixed)
        if not self.keyed_by_balls:
            return None
        x = inputs[0]  # (B, T, d_in)
        batch, length = x.shape[:2]
        # Scoring keys every position from the last prompt token on; generation keys the last position
        # of each call: the prompt's last token first, then each new token (GRACE's re-keying).
        starts = self._starts or [length - 1] * batch
        spans = [(b, t) for b in range(batch) for t in range(starts[b], length)]
        rows = torch.tensor([b for b, _ in spans], dtype=torch.long, device=x.device)
        cols = torch.tensor([t for _, t in spans], dtype=torch.long, device=x.device)
        index, distance = self.codebook.lookup(x[rows, cols])
        hit = index >= 0
        if not bool(hit.any()):
            return None
        self._fired += [(int(i), float(d)) for i, d in zip(index[hit], distance[hit], strict=True)]
        out = output.clone()
        out[rows[hit], cols[hit]] = self.codebook.values.to(out)[index[hit]]
        return out

    def _replace_fixed(
        self, output: torch.Tensor, inputs: torch.Tensor, rows: list[Fixed | None]
    ) -> torch.Tensor:
        """Per row, the value of one of its candidate entries at its position: the one whose key is
        nearest the row's input there (GRACE's distance, among the edits retrieval admitted)."""
        out = output.clone()
        self._picked = []
        for row, fixed in enumerate(rows):
            if fixed is None or fixed[0] >= out.shape[1]:
                self._picked.append(None)
                continue
            position, entries = fixed
            keys = torch.stack([e.key for e in entries]).to(inputs)  # (k, d_in)
            best = int(torch.cdist(inputs[row, position][None].float(), keys.float())[0].argmin())
            out[row, position] = entries[best].value.to(out)
            self._picked.append(entries[best].edit_id)
        self._fixed = None  # the key position is in the first forward only (the prompt)
        return out

    # ----------------------------------------------------------------- edits
    def check(self, records: Sequence[EditRecord]) -> None:
        for record in records:
            if not self._item(record.prompt, record.target)[1]:
                raise InvalidEditError(f"the target {record.target!r} has no tokens for {self.lm.model_id}")

    def edit(self, records: Sequence[EditRecord]) -> None:
        """Train the records' values (`batch_size` edits per batch), write each entry, then insert it."""
        self.check(records)
        for entry in self._learn(records):
            self._write(entry)
            self.entries[entry.edit_id] = entry
            self.codebook.insert(entry)

    def forget(self, edit_ids: Sequence[str]) -> None:
        for edit_id in edit_ids:
            if self.entries.pop(edit_id, None) is not None and self.folder is not None:
                (self.folder / f"{edit_id}.safetensors").unlink(missing_ok=True)
        self.codebook = build(list(self.entries.values()), self.config.eps_init)

    def sync(self, active: Sequence[EditRecord]) -> None:
        """Entries in the store's order; missing ones trained (and written), others deleted."""
        wanted = {r.edit_id for r in active}
        known = dict(self.entries)
        self.entries = {}
        if self.folder is not None:  # entries the store never committed (or forgot) leave the disk too
            for edit_id in known.keys() - wanted:
                (self.folder / f"{edit_id}.safetensors").unlink(missing_ok=True)
        learned = {e.edit_id: e for e in self._learn([r for r in active if r.edit_id not in known])}
        for record in active:
            entry = known.get(record.edit_id)
            if entry is None:
                entry = learned[record.edit_id]
                self._write(entry)
            self.entries[record.edit_id] = entry
        self.codebook = build(list(self.entries.values()), self.config.eps_init)

    def clear(self) -> None:
        self.forget(list(self.entries))

    def describe(self) -> dict[str, str]:
        return {"module": self.path, "entries": str(len(self.codebook)), "edits": str(len(self.entries))}

    def save(self, path: Path) -> None:
        return None  # every entry was written when it was made

    def load(self, path: Path) -> None:
        """Read the entries written under `path` (their order comes from the store, in `sync`)."""
        self.folder = path / ENTRY_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        # In the order they were written, until `sync` puts them in the store's order.
        for file in sorted(self.folder.glob("*.safetensors"), key=lambda f: (f.stat().st_mtime_ns, f.name)):
            state = read_state(file)
            if state is None:
                file.unlink()  # torn or damaged; `sync` retrains the edit if the store holds it
                continue
            tensors = state[0]
            label = tuple(int(i) for i in tensors["label"].tolist())
            self.entries[file.stem] = Entry(file.stem, tensors["key"], tensors["value"], label)
        self.codebook = build(list(self.entries.values()), self.config.eps_init)

    # ----------------------------------------------------------------- answering
    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        ids = prompt_ids(self.lm, render(self.lm, prompt, use_chat_template=self.config.use_chat_template))
        self._fired = []
        text = generate_ids(self.lm, ids, gen)
        used = list(dict.fromkeys(self.codebook.edit_ids[i] for i, _ in self._fired))
        fired: dict[str, tuple[int, float]] = {}  # per edit, its closest firing
        for i, d in self._fired:
            edit_id = self.codebook.edit_ids[i]
            if edit_id not in fired or d < fired[edit_id][1]:
                fired[edit_id] = (i, d)
        injected = "\n".join(
            f"GRACE entry of edit {e[:8]} at {self.path}: distance {fired[e][1]:.3f} <= radius "
            f"{self.codebook.radii[fired[e][0]]:.3f}"
            for e in used
        )
        return Generation(text, injected, tuple(used))

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        items = [self._item(r.prompt, r.target) for r in requests]
        scores: list[TargetScore] = []
        size = self.config.batch_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            self._starts = [len(p) - 1 for p, _ in chunk]
            try:
                scores += score_ids(self.lm, chunk, len(chunk), in_order=True)
            finally:
                self._starts = None
        return scores

    def _item(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        return item_ids(self.lm, prompt, target, use_chat_template=self.config.use_chat_template)

    # ----------------------------------------------------------------- training values
    def _learn(self, records: Sequence[EditRecord]) -> list[Entry]:
        """The keys and trained values of edits (with the codebook off), `batch_size` edits a batch."""
        config, entries = self.config, []
        for start in range(0, len(records), config.batch_size):
            chunk = records[start : start + config.batch_size]
            items = [self._item(r.prompt, r.target) for r in chunk]
            tasks = [
                ValueTask(prompt, target + self._answer_end, _seed(r))
                for (prompt, target), r in zip(items, chunk, strict=True)
            ]
            with self.disabled():
                learned = train_values(self.lm, self.path, self.layer, tasks, config.steps, self.stem)
            entries += [
                Entry(r.edit_id, one.key, one.value, tuple(target))
                for r, (_, target), one in zip(chunk, items, learned, strict=True)
            ]
            for r, one in zip(chunk, learned, strict=True):
                if not one.converged:
                    log.warning(
                        "edit %s: its GRACE value did not make the model answer %r within %d steps; the "
                        "edit is kept but may not hold (raise backend.n_iter, or try another backend.layer)",
                        r.edit_id[:8],
                        r.target,
                        config.n_iter,
                    )
        return entries

    def _write(self, entry: Entry) -> None:
        if self.folder is None:
            return
        tensors = {
            "key": entry.key,
            "value": entry.value,
            "label": torch.tensor(entry.label, dtype=torch.long),
        }
        write_state(self.folder / f"{entry.edit_id}.safetensors", tensors)


def _seed(record: EditRecord) -> int:
    """The cold init's seed: the same edit always starts from the same value (replays are exact)."""
    digest = hashlib.sha256(f"{record.prompt}\x00{record.target}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class RetrievalGraceBackend(GraceBackend):
    """GRACE values, applied where recall's retrieval and sentinel admit the edit (not the ε-balls):
    the top admitted edit's value replaces the output at the last prompt token."""

    name: ClassVar[str] = "grace_retrieval"
    capabilities: ClassVar[Capability] = GraceBackend.capabilities | Capability.USES_RETRIEVAL
    keyed_by_balls: ClassVar[bool] = False
    # The preset's learned sentinel belongs to the shipped knowledge model: a fixed gate on the tiny llama.
    tiny_settings: ClassVar[Mapping[str, Any]] = {**GraceBackend.tiny_settings, "sentinel.kind": "fixed"}

    def _candidates(self, hits: Sequence[SearchHit]) -> list[Entry]:
        """The admitted edits' entries, in hit order: the first only (pick: first) or all (pick: key)."""
        if self._disabled:
            return []
        entries = [self.entries[h.record.edit_id] for h in hits if h.record.edit_id in self.entries]
        return entries[:1] if self.config.pick == "first" else entries

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        ids = prompt_ids(self.lm, render(self.lm, prompt, use_chat_template=self.config.use_chat_template))
        candidates = self._candidates(hits)
        self._fixed = [(len(ids) - 1, candidates)] if candidates else None
        self._picked = []
        try:
            text = generate_ids(self.lm, ids, gen)
        finally:
            self._fixed = None
        edit_id = self._picked[0] if self._picked else None
        if edit_id is None:
            return Generation(text)
        return Generation(text, f"GRACE value of edit {edit_id[:8]} at {self.path}", (edit_id,))

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        scores: list[TargetScore] = []
        size = self.config.batch_size
        for start in range(0, len(requests), size):
            chunk = requests[start : start + size]
            items = [self._item(r.prompt, r.target) for r in chunk]
            candidates = [self._candidates(r.hits) for r in chunk]
            fixed: list[Fixed | None] = [
                (len(p) - 1, c) if c else None for (p, _), c in zip(items, candidates, strict=True)
            ]
            self._fixed = fixed if any(fixed) else None
            try:
                scores += score_ids(self.lm, items, len(items), in_order=True)
            finally:
                self._fixed = None
        return scores
