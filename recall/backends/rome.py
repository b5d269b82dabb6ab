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

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from memory_store import EditRecord
from memory_store.files import atomic_write
from recall.backends.base import BackendConfig, Capability
from recall.backends.weight_editor import Change, WeightDelta, WeightEditor
from recall.errors import ConfigError
from recall.lm.hooks import edited_module
from recall.lm.loading import LanguageModel
from recall.lm.split import StemCache, common_stem
from recall.locate.corpus import CorpusSpec
from recall.locate.delta import DeltaSettings, Row, train_delta
from recall.locate.statistics import SecondMoment, compute_moments, load_moment
from recall.locate.subjects import require_subjects, subject_prompt
from recall.locate.templates import sample_prefixes, with_prefix

PREFIX_FILE = "prefixes.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RomeConfig(BackendConfig, DeltaSettings):
    """Knobs of ROME (METHODS.md §5.1-5.2; the preset says why each value): δ's training settings
    (lr, steps, stop_loss, kl_factor, weight_decay, clamp) are DeltaSettings', inherited."""

    name: str = "rome"
    layer: int = 4  # decoder layer whose MLP output projection is edited; negative counts from the end
    # corpus: C from the model's own samples (recall stats; computed on first use when missing);
    # identity: u = k*/||k*|| (EasyEdit's mom2_adjustment: false)
    statistics: Literal["corpus", "identity"] = "corpus"
    corpus_samples: int = 400
    corpus_length: int = 128
    stats_dir: str | None = None  # where statistics are cached (default: beside the model cache)
    prefixes: int = 5  # context prefixes keys are averaged over and δ is trained on, besides the bare prompt
    prefix_tokens: int = 10
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.steps < 1 or self.prefixes < 0 or self.prefix_tokens < 1 or self.clamp <= 0:
            raise ConfigError(
                "backend.lr and backend.clamp must be > 0, backend.steps and backend.prefix_tokens >= 1, "
                f"backend.prefixes >= 0; got lr={self.lr}, clamp={self.clamp}, steps={self.steps}, "
                f"prefix_tokens={self.prefix_tokens}, prefixes={self.prefixes}"
            )
        if self.corpus_samples < 1 or self.corpus_length < 1:
            raise ConfigError("backend.corpus_samples and backend.corpus_length must be >= 1")

    @property
    def corpus(self) -> CorpusSpec:
        return CorpusSpec(self.corpus_samples, self.corpus_length)


class RomeBackend(WeightEditor):
    """ROME: rank-one edits of one layer's MLP output projection, one after another."""

    name: ClassVar[str] = "rome"
    capabilities: ClassVar[Capability] = WeightEditor.capabilities | Capability.SUBJECT
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
        self.config = config
        self.layer, self.path = edited_module(lm.model, lm.model_id, "mlp_out", config.layer)
        self.moment = self._statistics(lm)
        # C⁻¹ (d_in, d_in) for u = C⁻¹k, inverted in float64 with a 1e-6 relative ridge (a corpus that
        # never activates some input leaves C singular)
        self.inverse: torch.Tensor | None = None
        if self.moment is not None:
            c = self.moment.matrix.double()
            ridge = 1e-6 * float(c.diagonal().mean()) * torch.eye(len(c), dtype=c.dtype)
            self.inverse = torch.linalg.inv(c + ridge)
        self.prefixes: list[str] | None = None  # sampled from the base model once, then stored (`load`)
        stats = "identity" if self.moment is None else self.moment.digest
        # What the deltas depend on (where the statistics are cached does not count; their digest does).
        fields = {k: v for k, v in asdict(config).items() if k != "stats_dir"}
        settings = json.dumps({**fields, "statistics_digest": stats}, sort_keys=True)
        super().__init__(lm, [self.path], use_chat_template=config.use_chat_template, settings=settings)
        self.stem = common_stem(self.lm, use_chat_template=config.use_chat_template)

    def _statistics(self, lm: LanguageModel) -> SecondMoment | None:
        if self.config.statistics == "identity":
            return None
        folder = Path(self.config.stats_dir) if self.config.stats_dir else None
        moment = load_moment(lm, self.layer, self.config.corpus, folder)
        if moment is None:
            log.warning(
                "no statistics for %s layer %d yet: computing them once (`recall stats --layers %d` does it "
                "ahead)",
                lm.model_id,
                self.layer,
                self.layer,
            )
            (moment,) = compute_moments(lm, [self.layer], self.config.corpus, root=folder)
        return moment

    # ----------------------------------------------------------------- checks and files
    def check(self, records: Sequence[EditRecord]) -> None:
        require_subjects(records, self.name)
        super().check(records)
        for record in records:  # the subject's tokens can be found in the rendered prompt
            subject_prompt(
                self.lm, record.prompt, record.subject or "", use_chat_template=self.use_chat_template
            )

    def load(self, path: Path) -> None:
        super().load(path)
        file = path / self.name / PREFIX_FILE
        if file.is_file():
            self.prefixes = list(json.loads(file.read_text(encoding="utf-8")))
        else:
            self.prefixes = self._sample_prefixes()
            text = json.dumps(self.prefixes, indent=1)

            def write(tmp: Path) -> None:
                tmp.write_text(text, encoding="utf-8")

            atomic_write(file, write)
        digest = hashlib.sha256(json.dumps(self.prefixes).encode()).hexdigest()[:16]
        self.settings = f"{self.settings}|prefixes {digest}"

    def _sample_prefixes(self) -> list[str]:
        with self.disabled():
            return sample_prefixes(self.lm, self.config.prefixes, self.config.prefix_tokens)

    def describe(self) -> dict[str, str]:
        stats = "identity (no statistics)" if self.moment is None else self.moment.describe()
        return {**super().describe(), "statistics": stats}

    # ----------------------------------------------------------------- one edit
    def compute(self, records: Sequence[EditRecord]) -> Change:
        (record,) = records
        if self.prefixes is None:
            self.prefixes = self._sample_prefixes()
        subject = record.subject or ""
        target = self._item(record.prompt, record.target)[1]
        rewrite = []
        for prefix in ["", *self.prefixes]:
            message = with_prefix(prefix, record.prompt)
            ids, at = subject_prompt(
                self.lm,
                message,
                subject,
                use_chat_template=self.use_chat_template,
                after=len(message) - len(record.prompt),
            )
            rewrite.append(Row(ids + target[:-1], at, tuple(target)))
        kl_ids, kl_at = subject_prompt(
            self.lm, f"{subject} is a", subject, use_chat_template=self.use_chat_template
        )
        # The stem's KV depends on the edited weights: a fresh cache for each edit.
        stem = StemCache(self.lm, self.stem)
        trained = train_delta(
            self.lm, self.path, self.layer, rewrite, [Row(kl_ids, kl_at)], self.config, stem
        )
        # On the CPU in float64 (C⁻¹ lives there); the journal moves the factors to the weight's device.
        k = trained.mean_key.double().cpu()
        u = k if self.inverse is None else self.inverse @ k
        u = u / u.norm()  # (d_in,)
        w = trained.delta.double().cpu() / (trained.key.double().cpu() @ u)  # (d_out,): W k gains exactly δ
        if trained.nll > 1.0:
            log.warning(
                "edit %s: ROME's δ left the target's loss at %.2f after %d steps; the edit may not hold",
                record.edit_id[:8],
                trained.nll,
                trained.steps,
            )
        return Change([WeightDelta(self.path, w.float()[:, None], u.float()[None, :])])
