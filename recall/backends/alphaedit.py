"""AlphaEditConfig + AlphaEditBackend (METHODS.md §5.4): MEMIT whose updates are projected onto the null
space of the statistics, so the keys C summarises (what the model knew) keep their outputs, and which
keeps the keys of every earlier batch in the solve, so later batches disturb them less.

Per edited layer: P = U Uᵀ with U the eigenvectors of C whose eigenvalues together hold at most
`null_space_energy` of C's trace (the smallest ones). The reference keeps eigenvalues under 2e-2, an
absolute threshold tied to Wikipedia statistics and a model's activation scale; a share of the trace
means the same on any model and corpus (the preset says which share, measured). Then for keys K (n, d_in)
and the running sum S = Σ K_pᵀK_p over earlier batches (their keys read after each batch was applied,
kept in each batch's journal file and summed again on open; only UᵀSU (r, r) is needed, and kept):

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
    null_space_energy: float = 0.2  # the share of C's trace the kept directions hold at most
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


def null_space(moment: torch.Tensor, energy: float) -> torch.Tensor:
    """U (d, r) float64: C's eigenvectors of smallest eigenvalue whose eigenvalues sum to at most
    `energy` of the trace (P = U Uᵀ)."""
    values, vectors = torch.linalg.eigh(moment.double())  # ascending
    kept = int((torch.cumsum(values.clamp(min=0), 0) <= energy * float(values.clamp(min=0).sum())).sum())
    basis: torch.Tensor = vectors[:, :kept]
    return basis


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
        self.bases = [null_space(moment, config.null_space_energy) for moment in moments]  # U (d_in, r)
        self.ridges = [config.l2 * float(m.double().diagonal().mean()) for m in moments]  # α per layer
        self.kept = [basis.shape[1] for basis in self.bases]
        log.info("alphaedit null space: %s directions kept of %d", self.kept, len(self.bases[0]))
        self.previous = [torch.zeros(r, r, dtype=torch.float64) for r in self.kept]  # UᵀSU per layer

    def describe(self) -> dict[str, str]:
        d = len(self.bases[0])
        kept = ", ".join(f"layer {layer}: {k}/{d}" for layer, k in zip(self.layers, self.kept, strict=True))
        described = {k: v for k, v in super().describe().items() if k != "λ"}  # MEMIT's λ: unused here
        return {
            **described,
            "null space": f"{kept} (≤ {self.config.null_space_energy:g} of C's trace)",
            "α": f"{self.config.l2:g} x C's mean eigenvalue",
        }

    def solve(self, index: int, keys: torch.Tensor) -> torch.Tensor:
        """X = U Z: X lies in P's range, and UᵀU = I turns (P M + αI) X = P Kᵀ (M = KᵀK + S) into
        (UᵀMU + αI) Z = UᵀKᵀ, an (r, r) symmetric system instead of a (d_in, d_in) one."""
        basis = self.bases[index]  # (d_in, r)
        projected = keys @ basis  # (n, r): K U
        inner = projected.T @ projected + self.previous[index]  # (r, r): Uᵀ(KᵀK + S)U
        inner += self.ridges[index] * torch.eye(len(inner), dtype=inner.dtype)
        z: torch.Tensor = torch.linalg.solve(inner, projected.T)  # (r, n)
        return (basis @ z).T  # (n, d_in)

    def keys_after(self, key_rows: list[tuple[list[int], int]], groups: int) -> dict[str, torch.Tensor]:
        read = read_at(self.lm, key_rows, inputs_of=self.paths)
        return {path: group_mean(read[path], groups) for path in self.paths}  # (n, d_in) each

    # ----------------------------------------------------------------- the running sum S
    def absorb(self, change: Change) -> None:
        for index, path in enumerate(self.paths):
            projected = change.keys[path].double() @ self.bases[index]  # (n, r)
            self.previous[index] += projected.T @ projected

    def reset(self) -> None:
        super().reset()
        for previous in self.previous:
            previous.zero_()

    def memo(self) -> dict[str, torch.Tensor]:
        return {f"{path}:previous": s for path, s in zip(self.paths, self.previous, strict=True)}

    def recall_memo(self, tensors: dict[str, torch.Tensor]) -> None:
        for index, path in enumerate(self.paths):
            self.previous[index] = tensors[f"{path}:previous"].double()
