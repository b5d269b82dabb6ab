"""LoRA adapters for the lte backend: find one (bundled name or directory) and apply it to a copy of the LM.

A bundled adapter lives in `recall/adapters/<name>/` as peft writes it (adapter_config.json,
adapter_model.safetensors) plus `training.json`: the model it was trained for, the resolved training
config, the command that rebuilt it and its validation numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from recall.errors import ConfigError
from recall.models import LanguageModel

BUNDLED_DIR = Path(__file__).parent / "adapters"
TRAINING_FILE = "training.json"


class AdapterError(ConfigError):
    """An adapter that cannot be found, read, or applied to this model."""


def bundled_adapters() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "adapter_config.json").is_file())


def resolve_adapter(name_or_path: str) -> Path:
    """The adapter directory for a bundled name or a path; AdapterError lists the bundled names."""
    bundled = BUNDLED_DIR / name_or_path
    if "/" not in name_or_path and (bundled / "adapter_config.json").is_file():
        return bundled
    path = Path(name_or_path).expanduser()
    if (path / "adapter_config.json").is_file():
        return path
    known = ", ".join(bundled_adapters()) or "none"
    raise AdapterError(
        f"no LoRA adapter at {name_or_path!r}: expected a directory with adapter_config.json "
        f"or a bundled name ({known}); `python -m training lte` writes one"
    )


def adapter_info(path: Path) -> dict[str, Any]:
    """The adapter's training.json ({} when absent, e.g. an adapter trained elsewhere)."""
    file = path / TRAINING_FILE
    if not file.is_file():
        return {}
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterError(f"cannot read {file}: {exc}") from exc
    return info if isinstance(info, dict) else {}


def load_adapted(lm: LanguageModel, name_or_path: str) -> LanguageModel:
    """A copy of `lm` with the LoRA adapter merged into its weights; `lm` itself stays the base model.

    The copy costs one more set of weights (~540 MB for SmolLM2-135M in float32) and buys two things:
    prompts without admitted edits keep running on the untouched base model, and merged weights make
    the adapted forward pass exactly as fast as the base one.
    """
    from peft import PeftModel

    path = resolve_adapter(name_or_path)
    trained_for = adapter_info(path).get("model_fingerprint")
    if trained_for and trained_for != lm.fingerprint:
        raise AdapterError(
            f"adapter {name_or_path!r} was trained for model fingerprint {trained_for}, "
            f"but {lm.model_id} has {lm.fingerprint}; retrain it for this model"
        )
    try:
        with (
            warnings.catch_warnings()
        ):  # peft calls a method transformers 5 deprecated; not the user's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model: Any = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(path))
        merged = peft_model.merge_and_unload()
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise AdapterError(f"cannot apply adapter {str(path)!r} to {lm.model_id}: {exc}") from exc
    merged.eval()
    weights = path / "adapter_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else "unknown"
    return LanguageModel(
        merged, lm.tokenizer, f"{lm.model_id}+{path.name}", f"{lm.fingerprint}+lora:{digest}"
    )
