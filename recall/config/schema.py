"""recall's config sections (frozen dataclasses) and how a memory's config is built: bundled base.yaml,
a backend preset, a user file, then dotted overrides. Each backend's own section is its config class,
found through the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recall.backends import get_backend
from recall.backends.base import BackendConfig
from recall.config.loader import build_dataclass, merge, read_yaml, set_dotted, to_plain
from recall.errors import ConfigError

CONFIG_DIR = Path(__file__).parent.parent / "configs"

ConflictPolicy = Literal["supersede", "reject", "keep_both"]
KeyKind = Literal["question", "statement", "subject"]


@dataclass(frozen=True)
class ModelConfig:
    """Which language model answers: an embedded name or a local Hugging Face directory."""

    name: str = "smollm2-135m"
    max_new_tokens: int = 32  # default answer length of `ask`

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("model.name must name a model: 'smollm2-135m', 'gemma3-270m' or a directory")
        if self.max_new_tokens < 1:
            raise ConfigError(f"model.max_new_tokens must be >= 1, got {self.max_new_tokens!r}")


@dataclass(frozen=True)
class EncoderConfig:
    """The sentence encoder that turns descriptors and queries into vectors."""

    name: str = "all-minilm-l6-v2"
    batch_size: int = 64


@dataclass(frozen=True)
class StoreConfig:
    """memory_store settings (index kind, size limits)."""

    index: Literal["auto", "flat", "hnsw"] = "auto"
    hnsw_min_rows: int = 50_000
    max_text_chars: int = 10_000


@dataclass(frozen=True)
class RetrievalConfig:
    """How edits are keyed and searched: several keys per edit, the best one counts."""

    keys: tuple[KeyKind, ...] = ("question", "statement")
    top_k: int = 1  # admitted statements handed to the backend
    # A hit after the first is admitted only if it scores within max_gap of the first (None: any of the
    # top_k): several edits go to the backend only when retrieval cannot tell them apart.
    max_gap: float | None = None
    # With a backend that reviews admitted edits (backend.relevance), only queries whose best admitted hit
    # beats the gate's cut-off by less than this go to review: the gate is sure of the others, which skip
    # its cost. None: every admitted query is reviewed.
    review_within: float | None = None
    # Hits read per query before the gate (None: top_k, at least 3). More candidates let the subject test
    # below find an edit that same-relation edits about other subjects outrank.
    search_k: int | None = None
    # A hit whose subject the query does not name (recall/retrieval/subjects.py) is admitted only if it
    # beats the gate's cut-off by this much more: an alias can still get through on a high score, another
    # entity's edit of the same relation cannot. None: subjects are not checked.
    subject_margin: float | None = None
    # A question that ends a longer text is also searched as its last sentence, and the gate reads it as
    # whichever of the two admits an edit by the wider margin (recall/retrieval/views.py): sentences
    # before the question (context, chatter) pull the query's vector away from the edit it asks about.
    # Such an edit question is keyed as its last sentence first, then whole (retrieval/descriptors.py).
    last_sentence: bool = True

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("retrieval.keys must name at least one of: question, statement, subject")
        if self.top_k < 1:
            raise ConfigError(f"retrieval.top_k must be >= 1, got {self.top_k!r}")
        if self.max_gap is not None and not 0.0 <= self.max_gap <= 2.0:
            raise ConfigError(
                f"retrieval.max_gap must lie in [0, 2] (a cosine difference), got {self.max_gap!r}"
            )
        if self.search_k is not None and self.search_k < self.top_k:
            raise ConfigError(
                f"retrieval.search_k must be >= retrieval.top_k={self.top_k} or null, got {self.search_k!r}"
            )
        if self.subject_margin is not None and not 0.0 <= self.subject_margin <= 2.0:
            raise ConfigError(
                "retrieval.subject_margin must lie in [0, 2] (a cosine difference) or be null, "
                f"got {self.subject_margin!r}"
            )
        if self.review_within is not None and not 0.0 <= self.review_within <= 2.0:
            raise ConfigError(
                "retrieval.review_within must lie in [0, 2] (a cosine difference), "
                f"got {self.review_within!r}"
            )


@dataclass(frozen=True)
class SentinelConfig:
    """The gate. 'fixed': one cosine cut-off (calibrated with `recall calibrate`). 'learned': RECIPE's
    knowledge sentinel, a per-query cut-off cos(query, sentinel) from a trained encoder (recipe)."""

    kind: Literal["fixed", "learned"] = "fixed"
    min_cosine: float = 0.6  # the fixed cut-off; a learned sentinel ignores it
    # What a hit must beat the learned sentinel by; None: the margin calibrated when it was trained.
    # A new memory takes it; an existing one keeps the sentinel it saved.
    margin: float | None = None

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"sentinel.min_cosine must lie in [-1, 1], got {self.min_cosine!r}")
        if self.margin is not None and not -2.0 <= self.margin <= 2.0:
            raise ConfigError(
                f"sentinel.margin must lie in [-2, 2] (a cosine difference), got {self.margin!r}"
            )


@dataclass(frozen=True)
class ConflictConfig:
    """What adding an edit for an already-edited question does."""

    policy: ConflictPolicy = "supersede"
    min_cosine: float = 0.95  # question-key similarity above which two edits are about the same question
    # Below min_cosine, an active edit this close with another answer is reported beside a new edit
    # (EditResult.similar) and left as it is: a re-worded question about the same fact usually lands
    # here, and so do other questions about the same subject, which must not be superseded. Share of
    # question pairs at or above 0.8 / 0.95 (`recall calibrate --conflicts --data F [--backend B]`):
    #   zsRE train, same fact: MiniLM 0.936 / 0.507, recipe keys 0.992 / 0.693
    #   zsRE train, nearest edit about another subject: MiniLM 0.015 / 0.000, recipe keys 0.006 / 0.000
    #   KnowEdit wiki_counterfact train, same subject, other question: MiniLM 0.621 / 0.043
    # None = no report.
    similar_cosine: float | None = 0.8
    # An active edit about the same subject, with another answer and question keys this close (or
    # closer), that the backend's relevance probe reads as answering the new edit's question (and the new
    # edit as answering its question) is the same fact reworded: the new edit supersedes it like an edit
    # of the same question (recall/edits.py). Two such edits admitted for one query: the newer answers
    # (recall/retrieval/current.py). None: neither. `recall calibrate --current --n 100` (recipe; pairs
    # in their own namespaces): the later of two edits of one fact alone admitted, CounterFact val /
    # zsRE train, and the first of two different facts about one subject superseded or overridden,
    # KnowEdit wiki_counterfact train ("The gender of X is" after "The occupation of X is"):
    #   off: 6 / 69, 26.3 (min_cosine alone);  0.6: 92 / 100, 75.8;  0.8: 85 / 100, 36.4;
    #   0.85: 77 / 99, 34.3;  0.9: 41 / 92, 27.3.  Other subjects' facts: 0 superseded at every cut.
    restated_cosine: float | None = 0.8

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"conflict.min_cosine must lie in [-1, 1], got {self.min_cosine!r}")
        if self.restated_cosine is not None and not -1.0 <= self.restated_cosine <= 1.0:
            raise ConfigError(
                f"conflict.restated_cosine must lie in [-1, 1] or be null, got {self.restated_cosine!r}"
            )
        if self.similar_cosine is not None and not -1.0 <= self.similar_cosine <= self.min_cosine:
            raise ConfigError(
                f"conflict.similar_cosine must lie in [-1, conflict.min_cosine={self.min_cosine}] or be "
                f"null, got {self.similar_cosine!r}"
            )


@dataclass(frozen=True)
class RecallConfig:
    """The whole configuration of one memory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    sentinel: SentinelConfig = field(default_factory=SentinelConfig)
    conflict: ConflictConfig = field(default_factory=ConflictConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def preset_names() -> list[str]:
    """The bundled backend presets (configs/backend/NAME.yaml), sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / "backend").glob("*.yaml"))


def load_config(
    path: str | Path | None = None,
    *,
    backend: str | None = None,
    overrides: Sequence[str] = (),
) -> RecallConfig:
    """Build a RecallConfig: bundled base.yaml, the backend's YAML, a user file, then `key=value` overrides.

    Raises:
        ConfigError: unknown keys (with close matches), wrong types, bad values, unreadable files.
    """
    user: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {item!r} must look like section.key=value, e.g. model.name=gemma3-270m"
            )
        set_dotted(user, key.strip(), yaml.safe_load(raw))
    # A backend YAML is a preset: lte_aligned.yaml says `name: lte` and sets the adapter; recipe.yaml
    # also sets the sections it needs (encoder, sentinel, ...). The user's file and overrides win.
    preset = backend or user.get("backend", {}).get("name") or BackendConfig.name
    backend_yaml = CONFIG_DIR / "backend" / f"{preset}.yaml"
    preset_data = read_yaml(backend_yaml) if backend_yaml.exists() else {}
    sections = {k: preset_data.pop(k) for k in list(preset_data) if k in _SECTIONS}
    # `models: {model name: {backend keys}}`: the preset's values for a model other than the default one
    per_model = preset_data.pop("models", None) or {}
    data = read_yaml(CONFIG_DIR / "base.yaml")
    merge(data, sections)
    user_backend = dict(user.pop("backend", {}) or {})
    user_backend.pop("name", None)  # the preset named it; its YAML may map it to a registered backend
    merge(data, user)
    merge(preset_data, dict(per_model.get(str(data.get("model", {}).get("name")), None) or {}))
    merge(preset_data, user_backend)
    preset_data.setdefault("name", preset)
    data["backend"] = preset_data
    return config_from_dict(data)


# Sections a backend preset may set besides its own keys (`model` stays the user's choice).
_SECTIONS = ("encoder", "store", "retrieval", "sentinel", "conflict")


def config_from_dict(data: Mapping[str, Any]) -> RecallConfig:
    """Strictly convert a plain mapping (YAML or a manifest) into a RecallConfig."""
    data = dict(data)
    backend_raw = data.pop("backend", {}) or {}
    if not isinstance(backend_raw, Mapping):
        raise ConfigError(f"backend must be a mapping, got {backend_raw!r:.80}")
    backend_data = dict(backend_raw)
    spec = get_backend(str(backend_data.get("name", BackendConfig.name)))
    config = build_dataclass(RecallConfig, data, "")
    backend_config = build_dataclass(spec.config_cls, backend_data, "backend.")
    result: RecallConfig = dataclasses.replace(config, backend=backend_config)
    return result
