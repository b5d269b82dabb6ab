"""Build the parts of an EditMemory (model, encoder, backend, sentinel) from a config; loads are cached."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from memory_store import FixedSentinel, LearnedSentinel, Sentinel, load_sentinel
from recall.backends import EditBackend, get_backend
from recall.config import RecallConfig
from recall.encoder import Encoder, load_encoder
from recall.errors import ConfigError
from recall.models import LanguageModel, load_lm

# One process usually serves one model; loading it twice would double memory and start-up time.
_LM_CACHE: dict[str, LanguageModel] = {}
_ENCODER_CACHE: dict[str, Encoder] = {}
_LOCK = threading.Lock()


def shared_lm(name: str) -> LanguageModel:
    with _LOCK:
        if name not in _LM_CACHE:
            _LM_CACHE[name] = load_lm(name)
        return _LM_CACHE[name]


def shared_encoder(name: str, batch_size: int) -> Encoder:
    with _LOCK:
        if name not in _ENCODER_CACHE:
            _ENCODER_CACHE[name] = load_encoder(name, batch_size)
        return _ENCODER_CACHE[name]


def build_backend(config: RecallConfig, lm: LanguageModel) -> EditBackend:
    return get_backend(config.backend.name).factory(config.backend, lm)


def build_sentinel(config: RecallConfig, directory: Path, encoder: Encoder) -> Sentinel:
    """The saved sentinel when the memory has one, else a new one from the config.

    A learned sentinel is the encoder's trained sentinel vector (a RECIPE knowledge model has one):
    the per-query cut-off is the query's cosine with it, plus the margin calibrated in training (or
    sentinel.margin).
    """
    if (directory / "sentinel.json").is_file():
        return load_sentinel(directory)
    if config.sentinel.kind == "learned":
        vector = getattr(encoder, "sentinel_vector", None)
        if not isinstance(vector, np.ndarray):
            raise ConfigError(
                f"sentinel.kind=learned needs an encoder with a trained sentinel (a RECIPE knowledge model "
                f"such as 'recipe-smollm2-135m'); encoder {encoder.encoder_id!r} has none. "
                "Use sentinel.kind=fixed, or --backend recipe"
            )
        margin = config.sentinel.margin
        if margin is None:
            margin = float(getattr(encoder, "sentinel_margin", 0.0))
        return LearnedSentinel(vector, margin=margin)
    return FixedSentinel(config.sentinel.min_cosine)
