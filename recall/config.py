"""Frozen dataclass configs, loaded from YAML diffs with dotted overrides; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recall.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

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

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("retrieval.keys must name at least one of: question, statement, subject")
        if self.top_k < 1:
            raise ConfigError(f"retrieval.top_k must be >= 1, got {self.top_k!r}")
        if self.max_gap is not None and not 0.0 <= self.max_gap <= 2.0:
            raise ConfigError(
                f"retrieval.max_gap must lie in [0, 2] (a cosine difference), got {self.max_gap!r}"
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

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError(f"conflict.min_cosine must lie in [-1, 1], got {self.min_cosine!r}")
        if self.similar_cosine is not None and not -1.0 <= self.similar_cosine <= self.min_cosine:
            raise ConfigError(
                f"conflict.similar_cosine must lie in [-1, conflict.min_cosine={self.min_cosine}] or be "
                f"null, got {self.similar_cosine!r}"
            )


@dataclass(frozen=True)
class BackendConfig:
    """Base of every backend's config; `name` selects the backend in the registry."""

    name: str = "lte"


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
    data = read_yaml(CONFIG_DIR / "base.yaml")
    _merge(data, sections)
    user_backend = dict(user.pop("backend", {}) or {})
    user_backend.pop("name", None)  # the preset named it; its YAML may map it to a registered backend
    _merge(data, user)
    _merge(preset_data, user_backend)
    preset_data.setdefault("name", preset)
    data["backend"] = preset_data
    return config_from_dict(data)


# Sections a backend preset may set besides its own keys (`model` stays the user's choice).
_SECTIONS = ("encoder", "store", "retrieval", "sentinel", "conflict")


def config_from_dict(data: Mapping[str, Any]) -> RecallConfig:
    """Strictly convert a plain mapping (YAML or a manifest) into a RecallConfig."""
    from recall.backends import get_backend  # the registry knows each backend's config class

    data = dict(data)
    backend_data = dict(data.pop("backend", {}) or {})
    spec = get_backend(str(backend_data.get("name", BackendConfig.name)))
    config = build_dataclass(RecallConfig, data, "")
    backend_config = build_dataclass(spec.config_cls, backend_data, "backend.")
    result: RecallConfig = dataclasses.replace(config, backend=backend_config)
    return result


def build_dataclass(cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {prefix}{key!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build_dataclass(hint, value or {}, where + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        try:  # PyYAML reads 5e-1 as a string; coerce by annotation (STYLE.md 5.3)
            number = hint(value)
        except (TypeError, ValueError) as exc:
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where} must be {kind}, got {value!r}") from exc
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text, got {value!r}")
        return value
    return value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value
