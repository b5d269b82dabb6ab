"""A backend's state on disk: safetensors files whose metadata carries the sha256 of their tensors,
written atomically and checked on read. Such state is derived from the store's edits (a weight editor's
deltas, GRACE's codebook entries, RECIPE's prompts), so a file that fails the check (altered bytes, a
torn write, another tool's file) reads as None and `sync` recomputes what it held: a damaged file can
cost time, never a wrong answer."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from memory_store.files import atomic_write

logger = logging.getLogger(__name__)

DIGEST_KEY = "tensors_sha256"


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_state(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write `tensors` (contiguous) and `metadata` plus their sha256 to `path`, atomically."""
    from safetensors.torch import save_file

    plain = {name: tensor.contiguous() for name, tensor in tensors.items()}
    meta = {**(metadata or {}), DIGEST_KEY: tensors_sha256(plain)}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=meta))


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """(tensors, metadata) of a file `write_state` wrote, or None (and a warning) when it cannot be read
    or its tensors are not the ones it recorded. Files from before the digest are read as they are."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        logger.warning("ignoring the unreadable state file %s (%s); it is recomputed", path, exc)
        return None
    recorded = metadata.pop(DIGEST_KEY, None)
    if recorded is not None and recorded != tensors_sha256(tensors):
        logger.warning(
            "ignoring %s: its tensors are not the ones written (sha256 differs); recomputing", path
        )
        return None
    return tensors, metadata
