"""manifest.json: what a memory holds (format version, dim, encoder id) and the compatibility check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from memory_store.errors import CorruptStoreError, IncompatibleArtifactError, InvalidArgumentError
from memory_store.files import atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "check_compatible",
    "new_manifest",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def new_manifest(dim: int, encoder_id: str | None, store_id: str) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "memory_store",
        "store_id": store_id,  # also in edits.sqlite, so files from two memories are never mixed
        "dim": dim,
        "encoder_id": encoder_id,
        "metric": "inner_product",
        "created_at": time.time(),
        "extra": {},  # owned by the caller (recall: model id, backend config)
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(
            f"{str(path)!r} expected a readable JSON manifest, received an error: {exc}"
        ) from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise IncompatibleArtifactError(
            f"{str(path)!r} expected format_version <= {FORMAT_VERSION}, received {version!r}; "
            "upgrade memory_store to open this memory"
        )
    ok = (
        isinstance(data, dict)
        and version == FORMAT_VERSION
        and isinstance(data.get("dim"), int)
        and data["dim"] > 0
        and (data.get("encoder_id") is None or isinstance(data.get("encoder_id"), str))
        and isinstance(data.get("store_id"), str)
        and isinstance(data.get("extra"), dict)
    )
    if not ok:
        raise CorruptStoreError(
            f"{str(path)!r} expected a memory_store manifest (format_version, dim, encoder_id, store_id, "
            f"extra), received {data!r:.200}"
        )
    return dict(data)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"manifest values expected JSON-serialisable data (str, int, float, bool, None, list, dict), "
            f"received an error: {exc}; convert the value first"
        ) from exc
    atomic_write_json(directory / MANIFEST_NAME, manifest)


def check_compatible(manifest: dict[str, Any], path: Path, dim: int | None, encoder_id: str | None) -> None:
    """Raise IncompatibleArtifactError when the caller's dim or encoder_id differs from the manifest's."""
    if dim is not None and dim != manifest["dim"]:
        raise IncompatibleArtifactError(
            f"memory at {str(path)!r} was built with dim={manifest['dim']!r}, but it was opened with "
            f"dim={dim!r}; open it with the encoder it was built with, or create a new memory"
        )
    if encoder_id is not None and encoder_id != manifest["encoder_id"]:
        raise IncompatibleArtifactError(
            f"memory at {str(path)!r} was built with encoder_id={manifest['encoder_id']!r}, but it was "
            f"opened with encoder_id={encoder_id!r}; open it with the encoder it was built with, or create a "
            "new memory"
        )
