"""MemitConfig + MemitBackend (METHODS.md §5.3): a batch of edits spread over several layers' MLP output
projections in one closed-form solve per layer.

For a batch (add_many; add is a batch of one), with L the last edited layer:
- z_i = h_i + δ_i, the residual stream (decoder layer L's output) at record i's subject token, δ_i
  trained as ROME trains its δ (recall/locate/delta.py) but at the block output;
- for each layer l, lowest first, on the weights the layers before it left: K (n, d_in) the projection's
  inputs at the subject (averaged over the context prefixes, recall/locate/keys.py), R (n, d) = (z - the
  current residual) / (layers left), and ΔW_l = Rᵀ X with X (n, d_in) from `solve`: MEMIT's
  X = ((λ C + KᵀK)⁻¹ Kᵀ)ᵀ, in float64 (C: recall/locate/statistics.py; λ counts C as that many keys).

A long target (AnyEdit, METHODS.md §9) is several jobs, one per window of its text, each with z at the
token before the window; `compute` takes the windows in rounds (see there).

Each batch is one journal entry (recall/backends/weight_editor.py): forgetting one of its edits solves
the batch again without it, and recomputes every batch after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from memory_store import EditRecord
from recall.backends.base import BackendConfig
from recall.backends.subject_editor import SubjectConfig, SubjectEditor
from recall.backends.weight_editor import Change, WeightDelta
from recall.errors import ConfigError
from recall.lm.arch import arch_of
from recall.lm.hooks import edited_module
from recall.lm.loading import LanguageModel
from recall.lm.split import StemCache
from recall.locate.delta import Delta, Row
from recall.locate.keys import group_mean, read_at
from recall.locate.statistics import ridged
from recall.locate.templates import with_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemitConfig(SubjectConfig):
    """Knobs of MEMIT (METHODS.md §5.1, §5.3; the preset says why each value): the edited layers and λ;
    δ's training, the statistics and the prefixes are SubjectConfig's."""

    name: str = "memit"
    layers: tuple[int, ...] = (3, 4, 5, 6, 7)  # decoder layers whose MLP output projections are edited
    mom2_weight: float = 2000.0  # λ: how many keys' worth of weight the statistics C get in the solve
    # A target longer than `long_target_tokens` is a long edit (AnyEdit, METHODS.md §9): edited at the
    # token before its text rather than at a subject (it needs none), in windows of `chunk_tokens`, a z
    # per window at the token before it. long_target_tokens None: every edit at its subject;
    # chunk_tokens None: one z for the whole long target (plain MEMIT at the last prompt token).
    long_target_tokens: int | None = 40
    chunk_tokens: int | None = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"backend.layers must name distinct layers, got {list(self.layers)}")
        if self.mom2_weight <= 0:
            raise ConfigError(f"backend.mom2_weight must be > 0, got {self.mom2_weight}")
        for name in ("long_target_tokens", "chunk_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"backend.{name} must be >= 1 or null, got {getattr(self, name)}")


class MemitBackend(SubjectEditor):
    """MEMIT: batches of edits over several layers, one batch after another."""

    name: ClassVar[str] = "memit"
    batched: ClassVar[bool] = True
    config_class: ClassVar[type[BackendConfig]] = MemitConfig
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        "encoder.name": "hashing",
        "sentinel.min_cosine": 0.5,
        "backend.layers": [0],  # of 2: z at the last layer's output would reach no later token
        "backend.mom2_weight": 10.0,
        "backend.corpus_samples": 8,
        "backend.corpus_length": 16,
        "backend.stats_dir": "{stats_dir}",
        "backend.prefixes": 2,
        "backend.prefix_tokens": 3,
    }
    config: MemitConfig

    def __init__(self, config: MemitConfig, lm: LanguageModel) -> None:
        edited = sorted(edited_module(lm.model, lm.model_id, "mlp_out", layer) for layer in config.layers)
        self.layers, paths = [layer for layer, _ in edited], [path for _, path in edited]
        super().__init__(config, lm, paths, self.layers)
        self.z_layer = self.layers[-1]
        self.z_path = f"{arch_of(lm.model).layers}.{self.z_layer}"  # the decoder layer: its output
        self._inverses: list[torch.Tensor] | None = None  # (λC)⁻¹ per layer, made by the first `solve`

    def weighted_inverses(self) -> list[torch.Tensor]:
        """(λC)⁻¹ per layer (d_in, d_in), float64 on the CPU (C = I without statistics; statistics.ridged),
        so that `solve` costs an (n, n) system (a subclass with its own `solve` never inverts)."""
        if self._inverses is not None:
            return self._inverses
        inverses = []
        for layer, path in zip(self.layers, self.paths, strict=True):
            moment = self.moments[layer]
            identity = torch.eye(self.weights[path].shape[1], dtype=torch.float64)
            c = identity if moment is None else ridged(moment.matrix)
            inverses.append(torch.linalg.inv(self.config.mom2_weight * c))
        self._inverses = inverses
        return inverses

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "z": f"decoder layer {self.z_layer} output",
            "λ": f"{self.config.mom2_weight:g}",
        }

    # ----------------------------------------------------------------- one batch
    def compute(self, records: Sequence[EditRecord]) -> Change:
        """Round c edits chunk c of every record that has one (a short target is one chunk), on the
        weights rounds before it left: a later chunk's z is trained where the model already says the
        earlier ones (AnyEdit's autoregressive order). Each round solves every job so far, the earlier
        ones towards the z they already reach, so a round keeps what the rounds before it wrote."""
        chunks = [self.jobs(record) for record in records]
        jobs: list[tuple[list[Row], list[Row]]] = []
        zs = torch.zeros(0, dtype=torch.float64)
        saved = {p: w.detach().clone() for p, w in self.weights.items()}
        deltas: list[WeightDelta] = []
        trained: dict[str, list[Delta]] = {r.edit_id: [] for r in records}  # each record's δ per window
        try:
            for c in range(max(map(len, chunks))):
                todo = [
                    (record, parts[c])
                    for record, parts in zip(records, chunks, strict=True)
                    if c < len(parts)
                ]
                zs = torch.cat([zs, self._targets([r for r, _ in todo], [rows for _, rows in todo], trained)])
                jobs += [rows for _, rows in todo]
                deltas += self._spread(jobs, zs)
            for record in records:
                self.warn_weak(record, trained[record.edit_id])
            groups = len(jobs[0][0])  # rows per job: the bare prompt and each prefix
            keys_after = self.keys_after([(r.ids, r.subject) for rewrite, _ in jobs for r in rewrite], groups)
        finally:
            with torch.no_grad():
                for path, weight in self.weights.items():
                    weight.copy_(saved[path])
        return Change(merged(deltas), keys_after)

    def _spread(self, jobs: list[tuple[list[Row], list[Row]]], zs: torch.Tensor) -> list[WeightDelta]:
        """One MEMIT solve per layer, lowest first, moving each job's z layer towards zs (n, d); each
        delta is applied to the weights, so the next layer (and round) sees it."""
        groups = len(jobs[0][0])
        key_rows = [(r.ids, r.subject) for rewrite, _ in jobs for r in rewrite]
        deltas = []
        for i, path in enumerate(self.paths):
            read = read_at(self.lm, key_rows, inputs_of=[path], outputs_of=[self.z_path])
            keys = group_mean(read[path], groups).double()  # (n, d_in)
            now = read[self.z_path][::groups].double()  # (n, d): z's layer now, at the bare prompts
            residual = (zs - now) / (len(self.paths) - i)  # (n, d): this layer's share
            delta = WeightDelta(path, residual.T.float().contiguous(), self.solve(i, keys).float())
            with torch.no_grad():  # as the journal applies it
                self.weights[path].add_(delta.matrix().to(self.weights[path]))
            deltas.append(delta)
        return deltas

    def is_long(self, record: EditRecord) -> bool:
        size = self.config.long_target_tokens
        return size is not None and len(self._item(record.prompt, record.target)[1]) > size

    def needs_subject(self, record: EditRecord) -> bool:
        return not self.is_long(record)

    def jobs(self, record: EditRecord) -> list[tuple[list[Row], list[Row]]]:
        """(rewrite rows, KL rows) per chunk of `record`'s target: one job at the subject for a short
        target; for a long one, a job per `chunk_tokens` window (one for the whole target without), its
        rows the prompt (bare and after each context prefix) and the target up to the window, δ at the
        token before the window, no KL rows (AnyEdit has none: there is no subject to keep)."""
        if not self.is_long(record):
            return [self.rows(record)]
        if self.prefixes is None:
            self.prefixes = self._sample_prefixes()
        prompts = [self._item(with_prefix(p, record.prompt), record.target) for p in ["", *self.prefixes]]
        target = prompts[0][1]
        size = self.config.chunk_tokens or len(target)
        out: list[tuple[list[Row], list[Row]]] = []
        for start in range(0, len(target), size):
            window = target[start : start + size]
            out.append(([Row(ids + target[: start + len(window) - 1], len(ids) + start - 1, tuple(window))
                         for ids, _ in prompts], []))  # fmt: skip
        return out

    def solve(self, index: int, keys: torch.Tensor) -> torch.Tensor:
        """X (n, d_in) with ΔW = Rᵀ X for keys K (n, d_in) at layer `index` of the edited ones: MEMIT's
        (λC + KᵀK)⁻¹Kᵀ, transposed, by Woodbury's identity: (λC)⁻¹Kᵀ (I + K(λC)⁻¹Kᵀ)⁻¹."""
        whitened = self.weighted_inverses()[index] @ keys.T  # (d_in, n)
        inner = torch.eye(len(keys), dtype=keys.dtype) + keys @ whitened  # (n, n)
        adjusted: torch.Tensor = torch.linalg.solve(inner, whitened.T)  # (n, d_in): inner is symmetric
        return adjusted

    def keys_after(self, key_rows: list[tuple[list[int], int]], groups: int) -> dict[str, torch.Tensor]:
        """What the journal keeps of a batch besides its deltas, read with them applied (alphaedit's
        keys); MEMIT keeps nothing."""
        return {}

    def _targets(
        self,
        records: Sequence[EditRecord],
        rows: list[tuple[list[Row], list[Row]]],
        trained: dict[str, list[Delta]],
    ) -> torch.Tensor:
        """z (n, d): each record's residual at its subject token plus its trained δ, float64 on the CPU;
        each δ is appended to `trained` under its record's id."""
        zs = []
        stem = StemCache(self.lm, self.stem)  # every z of a round is trained on the weights before it
        bar = tqdm(rows, desc=f"{self.name} targets", unit="edit", disable=len(rows) < 2, leave=False)
        for record, record_rows in zip(records, bar, strict=True):
            delta = self.train(record, record_rows, self.z_path, self.z_layer, stem)
            trained[record.edit_id].append(delta)
            zs.append((delta.output + delta.delta).double().cpu())
        return torch.stack(zs)


def merged(deltas: Sequence[WeightDelta]) -> list[WeightDelta]:
    """One delta per path: the rank factors of every delta to it side by side (left (d_out, r1 + r2),
    right (r1 + r2, d_in)), as a journal file keeps one delta per path."""
    paths = list(dict.fromkeys(d.path for d in deltas))
    out = []
    for path in paths:
        parts = [d for d in deltas if d.path == path]
        if len(parts) == 1:
            out.append(parts[0])
            continue
        rights = [d.right for d in parts if d.right is not None]
        if len(rights) < len(parts):  # a full matrix among them: add them up
            out.append(WeightDelta(path, torch.stack([d.matrix() for d in parts]).sum(0)))
        else:
            out.append(WeightDelta(path, torch.cat([d.left for d in parts], dim=1), torch.cat(rights)))
    return out
