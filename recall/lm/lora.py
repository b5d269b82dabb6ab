"""LoRA adapters for the lte backend: find one (bundled name or directory) and apply it to a copy of the LM.

A bundled adapter lives in `recall/adapters/<name>/` as peft writes it (adapter_config.json,
adapter_model.safetensors) plus `training.json`: the model it was trained for, the resolved training
config, the command that rebuilt it and its validation numbers.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path
from typing import Any

from recall.artifacts import (
    BUNDLED_DIR,
    TRAINING_FILE,
    ArtifactError,
    artifact_info,
    bundled,
    check_trained_for,
    resolve_artifact,
)
from recall.lm.loading import LanguageModel
from recall.lm.weights import shared_parameters

__all__ = [
    "BUNDLED_DIR",
    "TRAINING_FILE",
    "ArtifactError",
    "adapter_info",
    "adapter_template",
    "load_adapted",
    "resolve_adapter",
]

_MARKER = "adapter_config.json"


def bundled_adapters() -> list[str]:
    return bundled(_MARKER)


def resolve_adapter(name_or_path: str) -> Path:
    """The adapter directory for a bundled name or a path; ArtifactError lists the bundled names."""
    return resolve_artifact(name_or_path, _MARKER, "LoRA adapter", "python -m training lte")


def adapter_info(path: Path) -> dict[str, Any]:
    return artifact_info(path)


def adapter_template(name_or_path: str) -> str | None:
    """The prompt template the adapter was trained with (recall/lm/prompts.py), or None for an adapter
    without recall's training.json. Adapters from before the template was recorded used "lte"."""
    config = adapter_info(resolve_adapter(name_or_path)).get("config")
    return str(config.get("template", "lte")) if isinstance(config, dict) else None


def load_adapted(lm: LanguageModel, name_or_path: str) -> LanguageModel:
    """A copy of `lm` with the LoRA adapter merged into its weights; `lm` itself stays the base model.

    Prompts without admitted edits keep running on the untouched base model, and merged weights make the
    adapted forward pass exactly as fast as the base one. The copy holds only the weights of the modules
    the adapter targets (q_proj and v_proj of the bundled adapter: ~53 MB for SmolLM2-135M in float32,
    not 540 MB); every other parameter is the base model's own tensor.
    """
    from peft import PeftConfig, PeftModel

    path = resolve_adapter(name_or_path)
    check_trained_for(f"adapter {name_or_path}", adapter_info(path), lm.model_id, lm.fingerprint)
    try:
        shared = _untargeted_parameters(lm.model, PeftConfig.from_pretrained(str(path)))
        with (
            warnings.catch_warnings()
        ):  # peft calls a method transformers 5 deprecated; not the user's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # The memo hands the copy the base's own tensors for every parameter left out of it.
            copied = copy.deepcopy(lm.model, {id(p): p for p in shared})
            peft_model: Any = PeftModel.from_pretrained(copied, str(path))
        _check_merge_leaves_base(peft_model, shared, path)
        merged = peft_model.merge_and_unload()
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ArtifactError(f"cannot apply adapter {str(path)!r} to {lm.model_id}: {exc}") from exc
    merged.eval()
    weights = path / "adapter_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else "unknown"
    return LanguageModel(
        merged, lm.tokenizer, f"{lm.model_id}+{path.name}", f"{lm.fingerprint}+lora:{digest}"
    )


def _untargeted_parameters(model: Any, config: Any) -> list[Any]:
    """The parameters of modules the adapter does not target (peft's own matching rule): merging never
    writes to them, so the adapted copy can share them with the base model."""
    from peft.tuners.tuners_utils import check_target_module_exists

    targeted = [
        name for name, _ in model.named_modules() if name and check_target_module_exists(config, name)
    ]
    return shared_parameters(model, targeted)


def _check_merge_leaves_base(peft_model: Any, shared: list[Any], path: Path) -> None:
    """Refuse, before merging, an adapter whose LoRA layers wrap a shared tensor: the merge adds to its
    weight in place, which would change the base model's answers too."""
    from peft.tuners.lora import LoraLayer

    ids = {id(p) for p in shared}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and any(id(p) in ids for p in module.get_base_layer().parameters()):
            raise ArtifactError(
                f"adapter {str(path)!r} wraps {name}, which recall expected it to leave alone"
            )
