"""Fixtures shared by every test folder: a tiny random llama built in-process."""

from __future__ import annotations

import os

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from recall.models import LanguageModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "who",
    "is",
    "the",
    "ceo",
    "of",
    "acme",
    "zorblax",
    "what",
    "capital",
    "france",
    "paris",
    "lyon",
    "wrote",
    "novel",
    "author",
    "book",
    "is",
    "are",
    "please",
    "acknowledge",
    "updated",
    "information",
    "provided",
    "below",
    "and",
    "respond",
    "to",
    "subsequent",
    "question",
    "[",
    "]",
    ":",
    ".",
    "?",
    "1",
    "2",
    "3",
    "jane",
    "doe",
    "marta",
    "quinlan",
    "john",
    "smith",
    "largest",
    "planet",
    "jupiter",
    "fact",
    "answer",
    "a",
    "an",
)


def make_tiny_lm(seed: int = 0) -> LanguageModel:
    vocab = {tok: i for i, tok in enumerate(["<s>", "</s>", "<pad>", "<unk>", *dict.fromkeys(WORDS)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).train(False)
    return LanguageModel(model, tokenizer, f"tiny-llama-{seed}", f"tiny{seed}")


@pytest.fixture(scope="session")
def tiny_lm() -> LanguageModel:
    return make_tiny_lm(0)
