"""SubjectConfig + SubjectEditor: what the editors that read a subject's last token share (rome, memit,
alphaedit; METHODS.md §5.1): the subject checks, the context prefixes sampled once from the base model
and stored with the memory, the rows δ (or z) is trained on, and the second-moment statistics C of the
edited layers (recall/locate/statistics.py; computed on first use when `recall stats` has not)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from memory_store import EditRecord
from memory_store.files import atomic_write
from recall.backends.base import BackendConfig, Capability
from recall.backends.weight_editor import WeightEditor
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.lm.split import StemCache, common_stem
from recall.locate.corpus import CorpusSpec
from recall.locate.delta import Delta, DeltaSettings, Row, train_delta
from recall.locate.statistics import SecondMoment, compute_moments, load_moment
from recall.locate.subjects import require_subjects, subject_prompt
from recall.locate.templates import sample_prefixes, with_prefix

PREFIX_FILE = "prefixes.json"
log = logging.getLogger(__name__)
WEAK_LOSS = 1.0  # nats per target token a trained δ should get under (its loss stops at 0.05)


@dataclass(frozen=True)
class SubjectConfig(BackendConfig, DeltaSettings):
    """Settings every subject editor has: δ's training (DeltaSettings'), the statistics and prefixes."""

    # corpus: C from the model's own samples (recall stats); identity: C = I (EasyEdit's ROME default)
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


class SubjectEditor(WeightEditor):
    """A weight editor whose edits name a subject; subclasses implement `compute`."""

    capabilities: ClassVar[Capability] = WeightEditor.capabilities | Capability.SUBJECT

    def __init__(
        self, config: SubjectConfig, lm: LanguageModel, paths: Sequence[str], layers: Sequence[int]
    ) -> None:
        self.config = config
        self.moments = {layer: self._statistics(lm, layer) for layer in layers}  # None: identity
        self.prefixes: list[str] | None = None  # sampled from the base model once, then stored (`load`)
        digests = {layer: "identity" if m is None else m.digest for layer, m in self.moments.items()}
        # one layer (rome): the digest itself, as memories made before memit have it in their chains
        stats: object = next(iter(digests.values())) if len(digests) == 1 else digests
        # What the changes depend on (where the statistics are cached does not count; their digest does).
        fields = {k: v for k, v in asdict(config).items() if k != "stats_dir"}
        settings = json.dumps({**fields, "statistics_digest": stats}, sort_keys=True, default=str)
        super().__init__(lm, paths, use_chat_template=config.use_chat_template, settings=settings)
        self.stem = common_stem(self.lm, use_chat_template=config.use_chat_template)

    def _statistics(self, lm: LanguageModel, layer: int) -> SecondMoment | None:
        if self.config.statistics == "identity":
            return None
        folder = Path(self.config.stats_dir) if self.config.stats_dir else None
        moment = load_moment(lm, layer, self.config.corpus, folder)
        if moment is None:
            log.warning(
                "no statistics for %s layer %d yet: computing them once (`recall stats --layers %d` does it "
                "ahead)",
                lm.model_id,
                layer,
                layer,
            )
            (moment,) = compute_moments(lm, [layer], self.config.corpus, root=folder)
        return moment

    def check(self, records: Sequence[EditRecord]) -> None:
        located = [r for r in records if self.needs_subject(r)]
        require_subjects(located, self.name)
        super().check(records)
        for record in located:  # the subject's tokens can be found in the rendered prompt
            subject_prompt(
                self.lm, record.prompt, record.subject or "", use_chat_template=self.use_chat_template
            )

    def needs_subject(self, record: EditRecord) -> bool:
        """Whether `record` is edited at its subject's last token (every edit, unless a subclass edits
        some elsewhere: memit's long targets)."""
        return True

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
        described = [
            f"layer {layer}: identity (no statistics)" if m is None else m.describe()
            for layer, m in self.moments.items()
        ]
        return {**super().describe(), "statistics": "; ".join(described)}

    def rows(self, record: EditRecord) -> tuple[list[Row], list[Row]]:
        """The rows δ is trained on for `record`: the prompt bare and after each context prefix, with
        the target teacher-forced (rewrite rows, read at the subject's last token), and "{subject} is a"
        (the KL row, whose next-token distribution is kept)."""
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
        return rewrite, [Row(kl_ids, kl_at)]

    def train(
        self, record: EditRecord, rows: tuple[list[Row], list[Row]], path: str, layer: int, stem: StemCache
    ) -> Delta:
        """δ for `record` at module `path` of decoder layer `layer`, trained on `rows` (`self.rows`)."""
        rewrite, kl = rows
        return train_delta(self.lm, path, layer, rewrite, kl, self.config, stem)

    def warn_weak(self, record: EditRecord, trained: Sequence[Delta]) -> None:
        """One warning for `record` when a δ of it (one per window of a long target) left the target's
        loss above WEAK_LOSS: the edit may not hold."""
        weak = [t for t in trained if t.nll > WEAK_LOSS]
        if not weak:
            return
        worst = max(weak, key=lambda t: t.nll)
        where = "" if len(trained) == 1 else f" in {len(weak)} of its {len(trained)} windows"
        log.warning(
            "edit %s: %s's δ left the target's loss above %.1f%s (%.2f after %d steps): it may not hold",
            record.edit_id[:8],
            self.name,
            WEAK_LOSS,
            where,
            worst.nll,
            worst.steps,
        )
