"""The dequantized-model cache: an embedded GGUF becomes a safetensors folder once, named by the GGUF's
content, so every virtualenv and every reinstall of the same package shares one copy.

Layout under `paths.cache_dir() / "models"`:
- `<name>-<sha256[:12]>/`: the dequantized model, with `recall_cache.json` (format, source, sha256, and
  the sha256 of each file, checked on every load: a damaged copy is dequantized again);
- `.sources/<stamp>`: the GGUF's sha256, for one (path, size, mtime) stamp, so that a load hashes the
  ~100 MB file only the first time it sees it at that path (hashing takes ~0.3 s; reading the stamp
  does not).

recall before this layout named the folder by the stamp itself, which left one ~540 MB copy per
virtualenv. Such a copy of the same weights is taken over (renamed) instead of dequantizing again, and
any further copies of those weights are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from recall.digests import file_sha256
from recall.paths import cache_dir
from recall.staging import staging_dir

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
META_FILE = "recall_cache.json"


def cached_gguf_folder(name: str, gguf: Path) -> Path:
    """The safetensors folder of `gguf`, dequantizing it first if no copy of these weights exists, or
    again if the copy's files are not the ones it recorded (altered, truncated: see `check_files`)."""
    models = cache_dir() / "models"
    digest = content_digest(gguf, models / ".sources")
    folder = models / f"{name}-{digest[:12]}"
    if (folder / META_FILE).is_file():
        problem = check_files(folder)
        if problem is None:
            return folder  # the usual load: the files' sha256 (~0.5 s for SmolLM2's 540 MB)
        logger.warning("the cached model %s is damaged (%s); dequantizing it again", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    if not _take_over_copy(name, digest, folder):
        _build(name, gguf, digest, folder)
    _remove_copies(name, digest, folder)  # once, when the folder first appears
    return folder


def content_digest(path: Path, sources: Path) -> str:
    """sha256 of `path`, remembered under `sources` for its (resolved path, size, mtime)."""
    stat = path.stat()
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    record = sources / hashlib.sha256(stamp.encode()).hexdigest()[:16]
    if record.is_file():
        known = record.read_text(encoding="utf-8").split()
        if len(known) == 1 and len(known[0]) == 64:
            return known[0]
    digest = file_sha256(path)
    sources.mkdir(parents=True, exist_ok=True)
    _write_atomically(record, digest + "\n")
    return digest


def _build(name: str, gguf: Path, digest: str, folder: Path) -> None:
    logger.info("dequantizing %s once into %s (later loads take about a second)", gguf.name, folder)
    # Write into a staging sibling, then rename: a crash never leaves a half-written cache.
    tmp = staging_dir(folder.parent, f".{name}-")
    try:
        dequantize(gguf, tmp)
        meta: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "source": str(gguf),
            "sha256": digest,
            "files": file_digests(tmp),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if folder.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file of a cache folder but its metadata, by name."""
    return {f.name: file_sha256(f) for f in sorted(folder.iterdir()) if f.is_file() and f.name != META_FILE}


def check_files(folder: Path) -> str | None:
    """What is wrong with a cache folder's files against the digests its metadata recorded, or None. A
    folder from before digests were recorded gets them now (its files are trusted once, as they were)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable {META_FILE}: {exc}"
    recorded = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        if not isinstance(meta, dict):
            return f"{META_FILE} is not an object"
        _write_atomically(folder / META_FILE, json.dumps({**meta, "files": file_digests(folder)}, indent=2))
        return None
    for name, expected in recorded.items():
        file = folder / str(name)
        if not file.is_file():
            return f"{name} is missing"
        if file_sha256(file) != expected:
            return f"{name} is not the file that was written (sha256 differs)"
    return None


def dequantize(gguf: Path, into: Path) -> None:
    """Load `gguf` with transformers and save it unquantized (float32 safetensors) with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    unquantized: Any = model  # save_pretrained refuses a GGUF-loaded model while hf_quantizer is set
    unquantized.hf_quantizer = None
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def _copies(name: str, digest: str, folder: Path) -> list[Path]:
    """Other finished folders of `name` holding these weights in this format (older recall's names)."""
    found = []
    for other in sorted(folder.parent.glob(f"{name}-*")):
        if other == folder or not (other / META_FILE).is_file():
            continue
        try:
            meta = json.loads((other / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("sha256") == digest and meta.get("format") == CACHE_FORMAT:
            found.append(other)
    return found


def _take_over_copy(name: str, digest: str, folder: Path) -> bool:
    for copy in _copies(name, digest, folder):
        try:
            os.replace(copy, folder)
        except OSError:  # another process took it, or made `folder`, first
            continue
        logger.info("reusing the cached copy %s as %s", copy.name, folder.name)
        return True
    return (folder / META_FILE).is_file()


def _remove_copies(name: str, digest: str, folder: Path) -> None:
    copies = _copies(name, digest, folder)
    if not copies:
        return
    size = sum(f.stat().st_size for copy in copies for f in copy.iterdir() if f.is_file())
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    logger.info(
        "removed %d duplicate cached copies of %s (%.1f GB) left by an older recall",
        len(copies),
        name,
        size / 1e9,
    )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
