"""Per-architecture facts, by the Hugging Face config's `model_type`: where the decoder layers are and,
inside one layer, the modules editors hook or change. Paths are dotted attribute paths with `{layer}`
for the layer index; recall/lm/hooks.py resolves them (no eval(), no string execution)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from recall.errors import ArchitectureError


@dataclass(frozen=True)
class Arch:
    """Module paths of one architecture family."""

    layers: str  # the ModuleList of decoder layers
    embed: str  # token embeddings
    final_norm: str
    mlp: str  # one layer's MLP block
    mlp_out: str  # the MLP's output projection: its input is ROME/MEMIT's key, its output their value
    attn: str  # one layer's self-attention block
    # Chat end-of-turn tokens this family's chat templates use, tried in order (recall/lm/scoring.py).
    end_of_turn: tuple[str, ...] = ()


_LLAMA_LIKE = Arch(
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    mlp="model.layers.{layer}.mlp",
    mlp_out="model.layers.{layer}.mlp.down_proj",
    attn="model.layers.{layer}.self_attn",
    end_of_turn=("<|im_end|>", "<|eot_id|>", "<end_of_turn>"),
)

ARCHS: dict[str, Arch] = {
    "llama": _LLAMA_LIKE,  # SmolLM2 (ChatML: <|im_end|>), Llama 3 (<|eot_id|>)
    "qwen2": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "gemma3_text": dataclasses.replace(_LLAMA_LIKE, end_of_turn=("<end_of_turn>",)),
    "gpt2": Arch(
        layers="transformer.h",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        mlp="transformer.h.{layer}.mlp",
        mlp_out="transformer.h.{layer}.mlp.c_proj",
        attn="transformer.h.{layer}.attn",
    ),
}


def arch_of(model: Any) -> Arch:
    """The Arch of a Hugging Face causal LM (by `model.config.model_type`)."""
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    try:
        return ARCHS[model_type]
    except KeyError:
        known = ", ".join(sorted(ARCHS))
        raise ArchitectureError(
            f"recall has no module map for model_type {model_type!r} (known: {known}); "
            "add one to recall/lm/arch.py"
        ) from None


def num_layers(model: Any) -> int:
    return int(model.config.num_hidden_layers)  # gpt2's config maps it to n_layer
