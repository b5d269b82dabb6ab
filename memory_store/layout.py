"""The files of a memory directory: create them in a crash-safe order, or open and cross-check them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from memory_store.errors import CorruptStoreError, InvalidArgumentError, MemoryNotFoundError
from memory_store.locks import ProcessLock
from memory_store.manifest import MANIFEST_NAME, check_compatible, new_manifest, read_manifest, write_manifest
from memory_store.sqlite import EditDatabase

__all__ = ["DATABASE_NAME", "LOCK_NAME", "open_layout"]

DATABASE_NAME = "edits.sqlite"
LOCK_NAME = "lock"


def _open_existing(
    directory: Path, dim: int | None, encoder_id: str | None, read_only: bool
) -> tuple[dict[str, Any], EditDatabase]:
    manifest = read_manifest(directory)
    check_compatible(manifest, directory, dim, encoder_id)
    if not (directory / DATABASE_NAME).exists():
        # sqlite3 would silently create an empty database here and the memory would look empty.
        raise CorruptStoreError(
            f"memory at {str(directory)!r} expected {DATABASE_NAME} beside its manifest, received none"
        )
    db = EditDatabase(directory / DATABASE_NAME, read_only=read_only)
    try:
        meta = db.check_schema()
        if meta.get("store_id") != manifest["store_id"] or meta.get("dim") != str(manifest["dim"]):
            raise CorruptStoreError(
                f"memory at {str(directory)!r}: {DATABASE_NAME} (store_id={meta.get('store_id')!r}, "
                f"dim={meta.get('dim')!r}) does not belong to its manifest (store_id="
                f"{manifest['store_id']!r}, dim={manifest['dim']!r})"
            )
    except BaseException:
        db.close()
        raise
    return manifest, db


def _create(directory: Path, dim: int, encoder_id: str | None) -> tuple[dict[str, Any], EditDatabase]:
    db = EditDatabase(directory / DATABASE_NAME)
    try:
        if not db.is_empty_or_blank():
            raise CorruptStoreError(
                f"{str(directory)!r} holds {DATABASE_NAME} with edits but no {MANIFEST_NAME}; "
                "restore the manifest from a backup or move the database away"
            )
        # The manifest goes last: its presence marks a fully created memory, so a crash half-way
        # leaves an empty database that the next create=True simply initialises again.
        manifest = new_manifest(dim, encoder_id, uuid.uuid4().hex)
        db.initialize(dim, manifest["store_id"])
        write_manifest(directory, manifest)
    except BaseException:
        db.close()
        raise
    return manifest, db


def open_layout(
    directory: Path, *, dim: int | None, encoder_id: str | None, create: bool, read_only: bool = False
) -> tuple[dict[str, Any], EditDatabase, ProcessLock]:
    """Lock the memory at `directory`, then open (or, with `create`, make) its manifest and database;
    `read_only` writes nothing at all (not even the lock's pid)."""
    if read_only and create:
        raise InvalidArgumentError("a memory cannot be created read-only: pass create=False")
    exists = (directory / MANIFEST_NAME).exists()
    if not exists and not create:
        raise MemoryNotFoundError(
            f"expected a memory at {str(directory)!r}, received a path without {MANIFEST_NAME}; "
            "pass create=True (and dim=...) to create one"
        )
    if not exists and dim is None:
        raise InvalidArgumentError(
            f"creating a memory at {str(directory)!r} expected dim=<the encoder's dimension>, received None"
        )
    if directory.exists() and not directory.is_dir():
        raise InvalidArgumentError(f"memory path expected a directory, received the file {str(directory)!r}")
    if not read_only:
        directory.mkdir(parents=True, exist_ok=True)
    lock = ProcessLock(directory / LOCK_NAME, read_only=read_only)
    try:
        # Checked again under the lock: another process may have created the memory meanwhile.
        if (directory / MANIFEST_NAME).exists():
            manifest, db = _open_existing(directory, dim, encoder_id, read_only)
        elif dim is None:
            raise InvalidArgumentError(f"creating a memory at {str(directory)!r} expected dim, received None")
        else:
            manifest, db = _create(directory, dim, encoder_id)
    except BaseException:
        lock.release()
        raise
    return manifest, db, lock
