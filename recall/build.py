"""Build the parts of an EditMemory (store, model, encoder, sentinel, backend) for a new memory or from
a memory directory; model and encoder loads are cached per process (the backend is never shared: one
that changes weights owns private copies of what it changes, recall/lm/weights.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_store import (
    CorruptStoreError,
    FixedSentinel,
    LearnedSentinel,
    MemoryStore,
    Sentinel,
    StoreError,
    load_sentinel,
)
from memory_store.files import fsync_dir
from memory_store.manifest import MANIFEST_NAME, read_manifest
from recall._version import __version__
from recall.backends import EditBackend, get_backend, registered_backends
from recall.config import RecallConfig, config_from_dict
from recall.errors import ConfigError, IncompatibleArtifactError, MemoryExistsError
from recall.lm.devices import resolve_device
from recall.lm.loading import LanguageModel, load_lm
from recall.retrieval.encoder import Encoder
from recall.retrieval.encoder import load_encoder as load_plain_encoder
from recall.staging import staging_dir

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


def load_encoder(name: str, batch_size: int = 64, device: str = "cpu") -> Encoder:
    """An encoder a backend brings (a RECIPE knowledge model), else recall.retrieval's own kinds."""
    for backend in registered_backends():
        loader = get_backend(backend).encoder
        found: Encoder | None = loader(name, batch_size, device) if loader is not None else None
        if found is not None:
            return found
    return load_plain_encoder(name, batch_size, device)


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
        vector = encoder.sentinel_vector
        if vector is None:
            raise ConfigError(
                f"sentinel.kind=learned needs an encoder with a trained sentinel (a RECIPE knowledge model "
                f"such as 'recipe-smollm2-135m'); encoder {encoder.encoder_id!r} has none. "
                "Use sentinel.kind=fixed, or --backend recipe"
            )
        margin = config.sentinel.margin
        if margin is None:
            margin = encoder.sentinel_margin
        return LearnedSentinel(vector, margin=margin)
    return FixedSentinel(config.sentinel.min_cosine)


@dataclass
class MemoryParts:
    """What an EditMemory is made of."""

    store: MemoryStore
    lm: LanguageModel
    encoder: Encoder
    sentinel: Sentinel
    backend: EditBackend
    config: RecallConfig


def temporary_parts(
    config: RecallConfig, *, lm: LanguageModel | None, encoder: Encoder | None, device: str | None
) -> MemoryParts:
    """`create_parts` in a new temporary directory (its memory folder is parts.store.path); a failed
    create leaves nothing behind."""
    path = Path(tempfile.mkdtemp(prefix="recall-")) / "memory"
    try:
        return create_parts(path, config, lm=lm, encoder=encoder, device=device)
    except BaseException:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise


def create_parts(
    path: str | Path,
    config: RecallConfig,
    *,
    lm: LanguageModel | None,
    encoder: Encoder | None,
    device: str | None,
) -> MemoryParts:
    """A new memory directory and its parts. `device` ('auto', 'cpu', 'cuda[:N]') is where model and
    encoder run (default: `lm`'s, else auto); it is not stored.

    Atomic: the store, its manifest (model and config) and the sentinel are written in a staging folder
    beside `path`, which is renamed to `path` once complete; a crash leaves no memory (only the staging
    folder, ".NAME.creating-PID-*", removed by the next create there), never one that opens with other
    settings. MemoryExistsError when `path`
    holds a memory or other files."""
    path = Path(path)
    _check_new(path)
    device = device or (str(lm.device) if lm is not None else "auto")
    lm = lm or shared_lm(config.model.name, device)
    encoder = encoder or shared_encoder(config.encoder.name, config.encoder.batch_size, device)
    backend = build_backend(config, lm)  # a bad backend config fails here, before anything is written
    staging = staging_dir(path.parent, f".{path.name}.creating-")
    try:
        with MemoryStore.open(
            staging,
            dim=encoder.dim,
            encoder_id=encoder.encoder_id,
            create=True,
            index=config.store.index,
            hnsw_min_rows=config.store.hnsw_min_rows,
            max_text_chars=config.store.max_text_chars,
        ) as store:
            extra = {"model": lm.model_id, "model_fingerprint": lm.fingerprint, "config": config.to_dict()}
            store.update_manifest({**extra, "recall_version": __version__})
            build_sentinel(config, store.sentinel_dir, encoder).save(store.sentinel_dir)
        _publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return open_parts(path, lm=lm, model=None, device=device, encoder=encoder, backend=backend)


def _check_new(path: Path) -> None:
    if (path / MANIFEST_NAME).exists():
        raise MemoryExistsError(
            f"a memory already exists at {str(path)!r}; open it (EditMemory.open, or the CLI's --memory) "
            "or create the new one at another path"
        )
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise MemoryExistsError(
            f"{str(path)!r} is a file or a folder with other files in it; create the memory at a new or "
            "empty path"
        )


def _publish(staging: Path, path: Path) -> None:
    """Rename the complete staging folder to `path` (an empty folder there is replaced)."""
    try:
        os.replace(staging, path)
    except OSError as error:  # another process created a memory at `path` meanwhile
        raise MemoryExistsError(f"could not create the memory at {str(path)!r}: {error}") from None
    fsync_dir(path.parent)


def open_parts(
    path: str | Path,
    *,
    lm: LanguageModel | None,
    model: str | None,
    device: str | None,
    encoder: Encoder | None = None,
    backend: EditBackend | None = None,
    read_only: bool = False,
) -> MemoryParts:
    """The parts of an existing memory, with the model, config and store settings it was created with;
    the backend has loaded what it saved (the caller syncs it with the store). `encoder` and `backend`
    are the ones create_parts just made; `read_only` opens a store that writes no file."""
    config = _saved_config(Path(path))
    store = MemoryStore.open(
        path,
        index=config.store.index,
        hnsw_min_rows=config.store.hnsw_min_rows,
        max_text_chars=config.store.max_text_chars,
        read_only=read_only,
    )
    try:
        extra = store.manifest.get("extra", {})
        wanted = lm.model_id if lm is not None else model
        if wanted is not None and wanted != extra.get("model"):
            raise IncompatibleArtifactError(
                f"memory {str(path)!r} was built for model {extra.get('model')!r}, not {wanted!r}; "
                "open it without a model or create a new memory for that model"
            )
        device = device or (str(lm.device) if lm is not None else "auto")
        lm = lm or shared_lm(str(extra.get("model", config.model.name)), device)
        encoder = encoder or shared_encoder(config.encoder.name, config.encoder.batch_size, device)
        if encoder.encoder_id != store.encoder_id:
            raise IncompatibleArtifactError(
                f"memory {str(path)!r} was built with encoder {store.encoder_id!r}, "
                f"not {encoder.encoder_id!r}"
            )
        sentinel = build_sentinel(config, store.sentinel_dir, encoder)
        backend = backend or build_backend(config, lm)
        backend.load(store.path / "backend")  # a backend may keep the folder to write its state as it goes
    except BaseException:
        store.close()
        raise
    return MemoryParts(store, lm, encoder, sentinel, backend, config)


def _saved_config(path: Path) -> RecallConfig:
    """The config in the manifest's `extra`, read before the store opens so that its settings apply (the
    store's own open reports a missing or damaged manifest). A manifest without one is not opened with
    defaults: it is a store made without recall, or damaged."""
    try:
        extra = read_manifest(path).get("extra", {})
    except StoreError:
        return config_from_dict({})
    saved = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(saved, dict):
        raise CorruptStoreError(
            f"{str(path / MANIFEST_NAME)!r} holds no recall config (received {saved!r:.80}): a store made "
            "without recall, or a damaged manifest; create a new memory"
        )
    return config_from_dict(saved)


def memory_info(parts: MemoryParts) -> dict[str, Any]:
    """What a report stamps of a memory: path, model, encoder, backend (with what it describes of its
    artifacts), sentinel, config and recall's version. Plain JSON types."""
    return {
        "path": str(parts.store.path),
        "model": parts.lm.model_id,
        "model_fingerprint": parts.lm.fingerprint,
        "device": str(parts.lm.device),
        "encoder": parts.encoder.encoder_id,
        "encoder_fingerprint": parts.encoder.fingerprint,
        "backend": parts.backend.name,
        "backend_detail": parts.backend.describe(),
        "sentinel": parts.sentinel.name,
        "config": parts.config.to_dict(),
        "recall_version": __version__,
    }
