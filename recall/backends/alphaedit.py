"""AlphaEditConfig + AlphaEditBackend (METHODS.md §5.4): MEMIT whose updates are projected onto the null
space of the statistics, so the keys C summarises (what the model knew) keep their outputs, and which
keeps the keys of every earlier batch in the solve, so later batches disturb them less.

Per edited layer: P = U Uᵀ with U the eigenvectors of C whose eigenvalues together hold at most
`null_space_energy` of C's trace (the smallest ones). The reference keeps eigenvalues under 2e-2, an
absolute threshold tied to Wikipedia statistics and a model's activation scale; a share of the trace
means the same on any model and corpus (the preset says which share, measured). Then for keys K (n, d_in)
and the running sum S = Σ K_pᵀK_p over earlier batches (d_in, d_in; their keys read after each batch was
applied, kept in each batch's journal file and summed again on open):

    X = (P (KᵀK + S) + α I)⁻¹ P Kᵀ   (d_in, n), and ΔW = Rᵀ Xᵀ   (d_out, d_in)

in float64, with α = l2 · tr(C)/d_in (a layer's keys' scale). X = P(...)/α lies in P's range, so
ΔW k ≈ 0 for any k in the span C's large eigenvalues hold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recall.backends.base import BackendConfig
from recall.backends.memit import MemitBackend, MemitConfig
from recall.backends.weight_editor import Change
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.locate.keys import group_mean, read_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlphaEditConfig(MemitConfig):
    """Knobs of AlphaEdit (METHODS.md §5.4; the preset says why each value): MEMIT's, with the null
    space's size and α; `mom2_weight` is not used (P takes C's place)."""

    name: str = "alphaedit"
    null_space_energy: float = 0.05  # the share of C's trace the kept directions hold at most
    # α, the ridge of the solve, in units of C's mean eigenvalue (tr C / d_in) so that it means the same
    # at every layer and model (the reference code's L2 is absolute: 10, or 1 in EasyEdit's configs)
    l2: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.null_space_energy < 1 or self.l2 <= 0:
            raise ConfigError(
                "backend.null_space_energy must be in (0, 1) and backend.l2 > 0, got "
                f"{self.null_space_energy} and {self.l2}"
            )


def null_space(moment: torch.Tensor, energy: float) -> tuple[torch.Tensor, int]:
    """(P (d, d) float64, directions kept): the projection onto C's eigenvectors of smallest eigenvalue
    whose eigenvalues sum to at most `energy` of the trace."""
    values, vectors = torch.linalg.eigh(moment.double())  # ascending
    kept = int((torch.cumsum(values.clamp(min=0), 0) <= energy * float(values.clamp(min=0).sum())).sum())
    basis = vectors[:, :kept]  # (d, kept)
    return basis @ basis.T, kept


class AlphaEditBackend(MemitBackend):
    """AlphaEdit: MEMIT's batches, projected onto the statistics' null space, with earlier keys kept."""

    name: ClassVar[str] = "alphaedit"
    config_class: ClassVar[type[BackendConfig]] = AlphaEditConfig
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        **MemitBackend.tiny_settings,
        "backend.null_space_energy": 0.5,
        "backend.l2": 1.0,
    }
    config: AlphaEditConfig

    def __init__(self, config: AlphaEditConfig, lm: LanguageModel) -> None:
        super().__init__(config, lm)
        moments = [m.matrix for m in self.moments.values() if m is not None]
        if len(moments) != len(self.layers):
            raise ConfigError("alphaedit projects onto the statistics' null space: backend.statistics=corpus")
        self.projections: list[torch.Tensor] = []
        self.kept: list[int] = []
        self.ridges: list[float] = []  # α per layer: l2 times C's mean eigenvalue
        for moment in moments:
            projection, kept = null_space(moment, config.null_space_energy)
            self.projections.append(projection)
            self.kept.append(kept)
            self.ridges.append(config.l2 * float(moment.double().diagonal().mean()))
        log.info("alphaedit null space: %s directions kept of %d", self.kept, len(self.projections[0]))
        self.previous = [torch.zeros_like(p) for p in self.projections]  # S per layer (d_in, d_in)

    def describe(self) -> dict[str, str]:
        d = len(self.projections[0])
        kept = ", ".join(f"layer {layer}: {k}/{d}" for layer, k in zip(self.layers, self.kept, strict=True))
        return {
            **super().describe(),
            "null space": f"{kept} (≤ {self.config.null_space_energy:g} of C's trace)",
        }

    def solve(self, index: int, keys: torch.Tensor) -> torch.Tensor:
        p = self.projections[index]
        a = p @ (keys.T @ keys + self.previous[index]) + self.ridges[index] * torch.eye(len(p), dtype=p.dtype)
        x: torch.Tensor = torch.linalg.solve(a, p @ keys.T)  # (d_in, n)
        return x.T

    def keys_after(self, key_rows: list[tuple[list[int], int]], groups: int) -> dict[str, torch.Tensor]:
        read = read_at(self.lm, key_rows, inputs_of=self.paths)
        return {path: group_mean(read[path], groups) for path in self.paths}  # (n, d_in) each

    # ----------------------------------------------------------------- the running sum S
    def absorb(self, change: Change) -> None:
        for index, path in enumerate(self.paths):
            keys = change.keys[path].double()
            self.previous[index] += keys.T @ keys

    def reset(self) -> None:
        super().reset()
        for previous in self.previous:
            previous.zero_()

    def memo(self) -> dict[str, torch.Tensor]:
        return {f"{path}:previous": s for path, s in zip(self.paths, self.previous, strict=True)}

    def recall_memo(self, tensors: dict[str, torch.Tensor]) -> None:
        for index, path in enumerate(self.paths):
            self.previous[index] = tensors[f"{path}:previous"].double()
