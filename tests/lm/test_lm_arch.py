"""Module paths, forward hooks and private module copies on tiny random models of each supported
family (llama, qwen2, gemma3, gpt2), built in-process."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers

from recall.errors import ArchitectureError
from recall.lm.arch import ARCHS, arch_of, num_layers
from recall.lm.hooks import (
    StopForward,
    decoder_layers,
    forward_hook,
    layer_path,
    resolve_module,
    skip_layers_below,
    stop_after,
)
from recall.lm.loading import LanguageModel
from recall.lm.weights import private_bytes, private_copy

VOCAB, HIDDEN = 64, 32


def tiny(family: str) -> Any:
    torch.manual_seed(0)
    common: dict[str, Any] = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(
            transformers.GPT2Config(n_embd=HIDDEN, n_layer=2, n_head=2, tie_word_embeddings=False, **common)
        )
    sizes: dict[str, Any] = {
        "hidden_size": HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "tie_word_embeddings": False,
        **common,
    }
    if family == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes))
    if family == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**sizes))
    return transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(head_dim=16, **sizes))


FAMILIES = ["llama", "qwen2", "gemma3", "gpt2"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_path_of_the_family_resolves_and_hooks_see_the_mlp_output(family: str) -> None:
    model = tiny(family).train(False)
    arch = arch_of(model)
    assert model.config.model_type in ARCHS
    assert len(decoder_layers(model)) == num_layers(model) == 2
    for which in ("mlp", "mlp_out", "attn"):
        assert isinstance(resolve_module(model, layer_path(model, which, 1)), torch.nn.Module)
    for path in (arch.embed, arch.final_norm):
        resolve_module(model, path)
    seen: list[torch.Tensor] = []
    out_module = resolve_module(model, layer_path(model, "mlp_out", 0))
    with forward_hook(out_module, lambda _m, _i, output: seen.append(output)):
        model(input_ids=torch.tensor([[3, 4, 5]]))
    assert seen[0].shape == (1, 3, HIDDEN)
    model(input_ids=torch.tensor([[3, 4, 5]]))
    assert len(seen) == 1  # the hook is gone after the block


@pytest.mark.parametrize("family", FAMILIES)
def test_stop_after_ends_the_forward_at_the_layer(family: str) -> None:
    model = tiny(family).train(False)
    reached: list[torch.Tensor] = []
    with stop_after(decoder_layers(model)[0], reached), pytest.raises(StopForward):
        model(input_ids=torch.tensor([[3, 4]]))
    assert reached[0].shape == (1, 2, HIDDEN)


@pytest.mark.parametrize("family", FAMILIES)
def test_skipped_lower_layers_replay_the_output_they_are_given(family: str) -> None:
    model = tiny(family).train(False)
    ids, other = torch.tensor([[3, 4, 5]]), torch.tensor([[6, 7, 8]])
    below: list[Any] = []
    with torch.no_grad(), forward_hook(decoder_layers(model)[0], lambda _m, _i, out: below.append(out)):
        full = model(input_ids=ids).logits
        full_other = model(input_ids=other).logits
    with torch.no_grad(), skip_layers_below(model, 1, below[0]):
        assert torch.equal(model(input_ids=ids).logits, full)
        # layer 0 does not compute: the output it replays decides, whatever the input ids
        assert torch.equal(model(input_ids=other).logits, full)
    assert "forward" not in vars(decoder_layers(model)[0])  # the class's forward is back
    with torch.no_grad():
        assert torch.equal(model(input_ids=other).logits, full_other)


def test_a_missing_path_or_family_is_an_architecture_error() -> None:
    model = tiny("llama")
    with pytest.raises(ArchitectureError, match=r"model\.layers has no '7'"):
        resolve_module(model, "model.layers.7.mlp")
    with pytest.raises(ArchitectureError, match="no 'mlpp'"):
        resolve_module(model, "model.layers.0.mlpp")
    model.config.model_type = "unknown-family"
    with pytest.raises(ArchitectureError, match=r"recall/lm/arch\.py"):
        arch_of(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_private_copy_owns_only_its_modules(family: str) -> None:
    model = tiny(family).train(False)
    lm = LanguageModel(model, None, f"tiny-{family}", "fp")  # type: ignore[arg-type]
    path = layer_path(model, "mlp_out", 1)
    copy = private_copy(lm, [path])
    owned = resolve_module(copy.model, path)
    base = resolve_module(model, path)
    assert all(a is not b for a, b in zip(owned.parameters(), base.parameters(), strict=True))
    shared = resolve_module(copy.model, layer_path(model, "attn", 1))
    original = resolve_module(model, layer_path(model, "attn", 1))
    assert all(a is b for a, b in zip(shared.parameters(), original.parameters(), strict=True))
    assert private_bytes(lm, copy) == sum(p.numel() * p.element_size() for p in base.parameters())
    ids = torch.tensor([[3, 4, 5]])
    before = model(input_ids=ids).logits
    with torch.no_grad():
        next(owned.parameters()).add_(1.0)  # change the copy: the base model must not move
    assert torch.equal(model(input_ids=ids).logits, before)
    assert not torch.equal(copy.model(input_ids=ids).logits, before)


def test_a_tied_weight_cannot_be_owned() -> None:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(config)
    lm = LanguageModel(model, None, "tied", "fp")  # type: ignore[arg-type]
    with pytest.raises(ArchitectureError, match="tied"):
        private_copy(lm, ["lm_head"])
