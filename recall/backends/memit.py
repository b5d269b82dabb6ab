"""MemitConfig + MemitBackend (METHODS.md §5.3): a batch of edits spread over several layers' MLP output
projections in one closed-form solve per layer.

For a batch (add_many; add is a batch of one), with L the last edited layer:
- z_i = h_i + δ_i, the residual stream (decoder layer L's output) at record i's subject token, δ_i
  trained as ROME trains its δ (recall/locate/delta.py) but at the block output;
- for each layer l, lowest first, on the weights the layers before it left: K (n, d_in) the projection's
  inputs at the subject (averaged over the context prefixes, recall/locate/keys.py), R (n, d) = (z - the
  current residual) / (layers left), and ΔW_l = Rᵀ X with X (n, d_in) from `solve`: MEMIT's
  X = ((λ C + KᵀK)⁻¹ Kᵀ)ᵀ, in float64 (C: recall/locate/statistics.py; λ counts C as that many keys).

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
from recall.locate.delta import Row
from recall.locate.keys import group_mean, read_at
from recall.locate.statistics import ridged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemitConfig(SubjectConfig):
    """Knobs of MEMIT (METHODS.md §5.1, §5.3; the preset says why each value): the edited layers and λ;
    δ's training, the statistics and the prefixes are SubjectConfig's."""

    name: str = "memit"
    layers: tuple[int, ...] = (3, 4, 5, 6, 7)  # decoder layers whose MLP output projections are edited
    mom2_weight: float = 2000.0  # λ: how many keys' worth of weight the statistics C get in the solve

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"backend.layers must name distinct layers, got {list(self.layers)}")
        if self.mom2_weight <= 0:
            raise ConfigError(f"backend.mom2_weight must be > 0, got {self.mom2_weight}")


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
        rows = [self.rows(record) for record in records]
        zs = self._targets(records, rows)  # (n, d)
        groups = len(rows[0][0])  # rows per record: the bare prompt and each prefix
        key_rows = [(r.ids, r.subject) for rewrite, _ in rows for r in rewrite]
        saved = {p: w.detach().clone() for p, w in self.weights.items()}
        deltas = []
        try:
            for i, path in enumerate(self.paths):
                read = read_at(self.lm, key_rows, inputs_of=[path], outputs_of=[self.z_path])
                keys = group_mean(read[path], groups).double()  # (n, d_in)
                now = read[self.z_path][::groups].double()  # (n, d): z's layer now, at the bare prompts
                residual = (zs - now) / (len(self.paths) - i)  # (n, d): this layer's share
                delta = WeightDelta(path, residual.T.float().contiguous(), self.solve(i, keys).float())
                with torch.no_grad():  # as the journal applies it, so the next layer sees it
                    self.weights[path].add_(delta.matrix().to(self.weights[path]))
                deltas.append(delta)
            keys_after = self.keys_after(key_rows, groups)
        finally:
            with torch.no_grad():
                for path, weight in self.weights.items():
                    weight.copy_(saved[path])
        return Change(deltas, keys_after)

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
        self, records: Sequence[EditRecord], rows: list[tuple[list[Row], list[Row]]]
    ) -> torch.Tensor:
        """z (n, d): each record's residual at its subject token plus its trained δ, float64 on the CPU."""
        zs = []
        stem = StemCache(self.lm, self.stem)  # every z is trained on the weights before the batch
        bar = tqdm(rows, desc=f"{self.name} targets", unit="edit", disable=len(rows) < 2, leave=False)
        for record, record_rows in zip(records, bar, strict=True):
            trained = self.train(record, record_rows, self.z_path, self.z_layer, stem)
            zs.append((trained.output + trained.delta).double().cpu())
        return torch.stack(zs)
