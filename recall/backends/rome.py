"""RomeConfig + RomeBackend (METHODS.md §5.2): one rank-one change of one MLP output projection per edit.

For an edit (prompt, target, subject): k* is the projection's input at the subject's last token, averaged
over the prompt with and without context prefixes; δ is trained at the projection's output there
(recall/locate/delta.py); u = C⁻¹k* / ||C⁻¹k*|| with C the second moment of the projection's inputs
(recall/locate/statistics.py, or the identity when asked: `backend.statistics=identity`, EasyEdit's
default); w = δ / (k·u) with k the bare prompt's key, and W += w uᵀ, so that W k = its old value + δ.

Each edit is computed on the weights the edits before it left (recall/backends/weight_editor.py keeps
the journal, replays on forget, and makes every edit durable before `add` returns).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from memory_store import EditRecord
from recall.backends.base import BackendConfig
from recall.backends.subject_editor import SubjectConfig, SubjectEditor
from recall.backends.weight_editor import Change, WeightDelta
from recall.lm.hooks import edited_module
from recall.lm.loading import LanguageModel
from recall.lm.split import StemCache
from recall.locate.statistics import ridged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RomeConfig(SubjectConfig):
    """Knobs of ROME (METHODS.md §5.1-5.2; the preset says why each value): δ's training settings,
    the statistics and the prefixes are SubjectConfig's."""

    name: str = "rome"
    layer: int = 4  # decoder layer whose MLP output projection is edited; negative counts from the end


class RomeBackend(SubjectEditor):
    """ROME: rank-one edits of one layer's MLP output projection, one after another."""

    name: ClassVar[str] = "rome"
    config_class: ClassVar[type[BackendConfig]] = RomeConfig
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        "encoder.name": "hashing",
        "sentinel.min_cosine": 0.5,
        "backend.layer": 0,  # of 2: δ at the last layer would reach no later token
        "backend.corpus_samples": 8,
        "backend.corpus_length": 16,
        "backend.stats_dir": "{stats_dir}",
        "backend.prefixes": 2,
        "backend.prefix_tokens": 3,
    }

    def __init__(self, config: RomeConfig, lm: LanguageModel) -> None:
        self.layer, self.path = edited_module(lm.model, lm.model_id, "mlp_out", config.layer)
        super().__init__(config, lm, [self.path], [self.layer])
        self.moment = self.moments[self.layer]
        # C⁻¹ (d_in, d_in) for u = C⁻¹k, in float64 (statistics.ridged)
        self.inverse = None if self.moment is None else torch.linalg.inv(ridged(self.moment.matrix))

    def compute(self, records: Sequence[EditRecord]) -> Change:
        (record,) = records
        # The stem's KV depends on the edited weights: a fresh cache for each edit.
        trained = self.train(record, self.rows(record), self.path, self.layer, StemCache(self.lm, self.stem))
        self.warn_weak(record, [trained])
        # On the CPU in float64 (C⁻¹ lives there); the journal moves the factors to the weight's device.
        k = trained.mean_key.double().cpu()
        u = k if self.inverse is None else self.inverse @ k
        u = u / u.norm()  # (d_in,)
        w = trained.delta.double().cpu() / (trained.key.double().cpu() @ u)  # (d_out,): W k gains exactly δ
        return Change([WeightDelta(self.path, w.float()[:, None], u.float()[None, :])])
