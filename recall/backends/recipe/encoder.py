"""RecipeEncoder: the Encoder a recipe memory stores and searches with (keys through MLP_K, queries
through MLP_Q). The backend registry offers it for any encoder name that is a RECIPE knowledge model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from recall.artifacts import resolve_artifact
from recall.backends.recipe.files import (
    _COMMAND,
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_knowledge_artifact,
    load_knowledge,
)


def load_recipe_encoder(name: str, batch_size: int, device: str) -> RecipeEncoder | None:
    """A RecipeEncoder when `name` is a RECIPE knowledge model (bundled name or directory), else None."""
    return RecipeEncoder(name, batch_size, device) if is_knowledge_artifact(name) else None


class RecipeEncoder:
    """The Encoder a recipe memory stores and searches with: keys through MLP_K, queries through MLP_Q,
    both L2-normalised; `sentinel_vector` is the normalised r_Θ that LearnedSentinel compares against,
    and `sentinel_margin` what a key must beat it by."""

    def __init__(self, name_or_path: str, batch_size: int = 64, device: str = "cpu") -> None:
        self.model = load_knowledge(name_or_path, device=device)
        path = resolve_artifact(name_or_path, CONFIG_FILE, "RECIPE knowledge model", _COMMAND)
        self.encoder_id = f"recipe:{path.name}"
        self.dim = self.model.settings.knowledge_dim
        self.batch_size = batch_size
        self.fingerprint = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
        with torch.inference_mode():
            self.sentinel_vector = _normalise(self.model.sentinel_key())[0]  # (R,)
        self.sentinel_margin = self.model.settings.sentinel_margin

    def encode_keys(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "key")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def _encode(self, texts: Sequence[str], side: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                parts.append(_normalise(self.model.encode(chunk, "key" if side == "key" else "query")))
        return np.concatenate(parts).astype(np.float32)


def _normalise(vectors: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy().astype(np.float32)
