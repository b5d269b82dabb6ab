"""Build the parts of an EditMemory (model, encoder, backend, sentinel) from a config; loads are cached."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from memory_store import FixedSentinel, LearnedSentinel, Sentinel, load_sentinel
from recall.backends import EditBackend, get_backend
from recall.config import RecallConfig
from recall.devices import resolve_device
from recall.encoder import Encoder, load_encoder
from recall.errors import ConfigError
from recall.models import LanguageModel, load_lm

# One process usually serves one model; loading it twice would double memory and start-up time.
_LM_CACHE: dict[tuple[str, str], LanguageModel] = {}  # (name, device)
_ENCODER_CACHE: dict[tuple[str, str], Encoder] = {}
_LOCK = threading.Lock()


def shared_lm(name: str, device: str = "auto") -> LanguageModel:
    key = (name, str(resolve_device(device)))
    with _LOCK:
        if key not in _LM_CACHE:
            _LM_CACHE[key] = load_lm(name, device=key[1])
        return _LM_CACHE[key]


def shared_encoder(name: str, batch_size: int, device: str = "auto") -> Encoder:
    key = (name, str(resolve_device(device)))
    with _LOCK:
        if key not in _ENCODER_CACHE:
            _ENCODER_CACHE[key] = load_encoder(name, batch_size, key[1])
        return _ENCODER_CACHE[key]


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
