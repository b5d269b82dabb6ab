"""Content digests of files: what the model cache is keyed by and checked against, what an artifact's
training.json records of its files, and what an eval stamp records of its data. One sha256 for all:
memory_store's (its index cache carries one too)."""

from __future__ import annotations

from memory_store.files import file_sha256

__all__ = ["file_sha256"]
