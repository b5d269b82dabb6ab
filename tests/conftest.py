"""Fixtures shared by every test folder: a tiny random llama built in-process, and a tiny RECIPE
knowledge model for it."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from recall.lm.loading import LanguageModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where PyTorch sees a CUDA device (never on CI, which has none)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


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


def word_tokenizer(**specials: str) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over the special tokens (in keyword order) and WORDS."""
    vocab = {tok: i for i, tok in enumerate([*specials.values(), *dict.fromkeys(WORDS)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)  # type: ignore[no-untyped-call]


def make_tiny_lm(seed: int = 0, layers: int = 2) -> LanguageModel:
    tokenizer = word_tokenizer(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    vocab = tokenizer.get_vocab()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).train(False)
    name = f"tiny-llama-{seed}" if layers == 2 else f"tiny-llama-{seed}-{layers}l"
    return LanguageModel(model, tokenizer, name, name.replace("tiny-llama-", "tiny"))


@pytest.fixture(scope="session")
def tiny_lm() -> LanguageModel:
    return make_tiny_lm(0)


@pytest.fixture(scope="session")
def deep_lm() -> LanguageModel:
    """A 4-layer tiny llama: what a multi-layer editor needs (z at layer 1 still reaches layers 2-3). Its
    output head is scaled up: at the random init's scale no hidden state can make a token likely."""
    lm = make_tiny_lm(3, layers=4)
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(30.0)
    return lm


def make_tiny_bert(folder: Path) -> Path:
    """A tiny random BERT with a word-level tokenizer over WORDS, saved as a Hugging Face folder: the
    base encoder of the tiny RECIPE knowledge model."""
    tokenizer = word_tokenizer(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    vocab = tokenizer.get_vocab()
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_recipe_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: LanguageModel, tiny_bert_dir: Path
) -> Path:
    """An untrained RECIPE knowledge model for the tiny llama (random heads over the tiny BERT), saved
    as an artifact directory the recipe backend and RecipeEncoder load."""
    from recall.backends.recipe.files import new_knowledge_model, save_knowledge
    from recall.backends.recipe.model import KnowledgeSettings

    settings = KnowledgeSettings(
        encoder=str(tiny_bert_dir),
        model=tiny_lm.model_id,
        model_fingerprint=tiny_lm.fingerprint,
        llm_hidden=int(tiny_lm.model.config.hidden_size),
        knowledge_dim=32,
        prompt_tokens=2,
        statement_tokens=3,
        sentinel_tokens=4,
        trainable_layers=1,
        max_text_tokens=32,
    )
    torch.manual_seed(2)
    artifact = tmp_path_factory.mktemp("tiny-recipe")
    save_knowledge(new_knowledge_model(settings, tiny_lm), artifact)
    return artifact


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_lm: LanguageModel) -> Path:
    """The tiny llama as a Hugging Face folder, so `load_lm(path)` loads it like any local model."""
    folder = tmp_path_factory.mktemp("tiny-model")
    copy.deepcopy(tiny_lm.model).save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def stats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the weight editors' second-moment statistics are cached in tests (never the user's cache)."""
    return tmp_path_factory.mktemp("stats")
