"""The recipe backend on the tiny llama: continuous prompts, the RECIPE encoder, the learned sentinel."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from memory_store import EditRecord, LearnedSentinel, SearchHit
from recall.artifacts import ArtifactError
from recall.backends import GenerationConfig
from recall.backends.recipe.backend import RecipeBackend, RecipeConfig
from recall.backends.recipe.encoder import RecipeEncoder
from recall.backends.recipe.files import edit_prompts, load_knowledge, new_knowledge_model
from recall.config import load_config
from recall.errors import ConfigError
from recall.lm.generation import generate_ids
from recall.lm.loading import LanguageModel
from recall.lm.scoring import embed_right, prompt_ids
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder

RECORD = EditRecord(
    prompt="who is the ceo of acme ?", target="jane doe", statement="who is the ceo of acme ? jane doe"
)


def _config(artifact: Path, *extra: str) -> Any:
    overrides = [f"backend.checkpoint={artifact}", f"encoder.name={artifact}", "model.name=tiny"]
    # the preset's probe and margin belong to the shipped SmolLM2 model
    overrides += ["backend.relevance=null", "backend.long_checkpoint=null", "sentinel.margin=null", *extra]
    return load_config(backend="recipe", overrides=overrides)


def test_the_preset_sets_encoder_sentinel_and_keys_and_the_user_wins() -> None:
    config = load_config(backend="recipe")
    assert config.backend.name == "recipe"
    assert config.encoder.name == "recipe-smollm2-135m"
    assert config.sentinel.kind == "learned"
    assert config.retrieval.keys == ("question", "statement")
    assert isinstance(config.backend, RecipeConfig)
    assert config.retrieval.top_k == config.backend.max_prompts == 5
    assert load_config(backend="recipe", overrides=["encoder.name=hashing"]).encoder.name == "hashing"
    assert load_config(backend="lte_aligned").encoder.name == "all-minilm-l6-v2"


def test_a_missing_or_foreign_checkpoint_is_a_clear_error(
    tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    with pytest.raises(ConfigError, match=r"backend\.checkpoint must name"):
        RecipeBackend(RecipeConfig(), tiny_lm)
    other = dataclasses.replace(tiny_lm, fingerprint="another-model")
    with pytest.raises(ArtifactError, match="trained for model fingerprint"):
        load_knowledge(str(tiny_recipe_dir), other)
    with pytest.raises(ArtifactError, match="no RECIPE knowledge model"):
        load_knowledge("no-such-model")


def test_the_encoder_is_asymmetric_and_normalised(tiny_recipe_dir: Path) -> None:
    encoder = RecipeEncoder(str(tiny_recipe_dir))
    keys = encoder.encode_keys(["who is the ceo of acme ?", "what is the capital of france ?"])
    queries = encoder.encode_queries(["who is the ceo of acme ?"])
    assert keys.shape == (2, encoder.dim)
    assert keys.dtype == np.float32
    assert np.allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(keys[0], queries[0])  # MLP_K and MLP_Q are different heads
    assert np.isclose(np.linalg.norm(encoder.sentinel_vector), 1.0, atol=1e-5)
    assert encoder.encoder_id == f"recipe:{tiny_recipe_dir.name}"
    assert encoder.encode_queries([]).shape == (0, encoder.dim)


def test_an_edit_prompt_is_the_learned_vectors_then_the_statement_tokens(
    tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    model = load_knowledge(str(tiny_recipe_dir), tiny_lm)
    facts = [(RECORD.prompt, RECORD.target), ("jane", "")]
    texts = [RECORD.statement, "jane"]
    with torch.inference_mode():
        keys = model.encode(texts, "key")
        learned = model.prompts(keys)  # (2, L_p = 2, d)
        prompts = edit_prompts(model, tiny_lm, facts, keys)
        embed = tiny_lm.model.get_input_embeddings()
        for text, vectors, prompt in zip(texts, learned, prompts, strict=True):
            ids = tiny_lm.tokenizer(text, add_special_tokens=False).input_ids[:3]  # statement_tokens = 3
            assert prompt.shape == (2 + len(ids), 64)
            assert torch.equal(prompt[:2], vectors)
            assert torch.equal(prompt[2:], embed(torch.tensor(ids)))
    assert len(prompts[1]) == 3  # a one-token statement adds one token, not three
    prompt_only = new_knowledge_model(dataclasses.replace(model.settings, statement_tokens=0), tiny_lm)
    with torch.inference_mode():
        assert [len(p) for p in edit_prompts(prompt_only, tiny_lm, facts, keys)] == [2, 2]  # RECIPE's form


def test_dialog_statement_tokens_are_the_edit_as_a_chat_exchange(
    tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    import copy

    from recall.lm.prompts import exchange_text

    tokenizer = copy.deepcopy(tiny_lm.tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
    lm = LanguageModel(tiny_lm.model, tokenizer, tiny_lm.model_id, tiny_lm.fingerprint)
    text = exchange_text(lm, RECORD.prompt, RECORD.target)
    assert text == "system :  . user : who is the ceo of acme ? . assistant : jane doe . "
    loaded = load_knowledge(str(tiny_recipe_dir), tiny_lm)
    model = new_knowledge_model(
        dataclasses.replace(loaded.settings, statement_form="dialog", statement_tokens=32), lm
    )
    model.load_state_dict(loaded.state_dict())
    with torch.inference_mode():
        keys = model.encode([RECORD.statement], "key")
        prompt = edit_prompts(model, lm, [(RECORD.prompt, RECORD.target)], keys)[0]
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert torch.equal(prompt[2:], lm.model.get_input_embeddings()(torch.tensor(ids)))
    assert exchange_text(tiny_lm, RECORD.prompt, RECORD.target) == RECORD.statement  # no chat template


def test_generation_with_a_prompt_is_greedy_over_the_prefixed_input(
    tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    backend = RecipeBackend(RecipeConfig(checkpoint=str(tiny_recipe_dir), text_tokens=0), tiny_lm)
    hit = SearchHit(record=RECORD, score=0.9, rank=0)
    prefix = backend.prefix((hit,))
    assert prefix is not None
    assert prefix.shape == (2 + 3, 64)  # L_p learned vectors + the statement's first 3 (the trained cap)
    ids = prompt_ids(tiny_lm, RECORD.prompt)
    produced: list[int] = []
    with torch.inference_mode():  # greedy by hand: one full forward per token, no cache
        for _ in range(4):
            embeds, mask = embed_right(tiny_lm, [ids + produced], [prefix])
            logits = tiny_lm.model(inputs_embeds=embeds, attention_mask=mask).logits
            produced.append(int(logits[0, -1].argmax()))
    expected = str(tiny_lm.tokenizer.decode(produced, skip_special_tokens=True)).strip()
    assert generate_ids(tiny_lm, ids, GenerationConfig(4, 4), prefix) == expected
    generated = backend.generate(RECORD.prompt, (hit,), GenerationConfig(max_new_tokens=4, min_new_tokens=4))
    assert generated.text == expected
    assert RECORD.statement in generated.injected


def test_memory_gates_with_the_learned_sentinel_and_reopens(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    encoder = RecipeEncoder(str(tiny_recipe_dir))
    with EditMemory.create(tmp_path / "m", _config(tiny_recipe_dir), lm=tiny_lm, encoder=encoder) as memory:
        assert isinstance(memory.sentinel, LearnedSentinel)
        added = memory.add(RECORD.prompt, RECORD.target).record
        retrieval = memory.retrieve("who is the ceo of acme ?")
        query = encoder.encode_queries(["who is the ceo of acme ?"])[0]
        assert retrieval.threshold == pytest.approx(float(query @ encoder.sentinel_vector), abs=1e-5)
        assert [h.record.edit_id for h in retrieval.hits] == [added.edit_id]
        assert all(h.score > retrieval.threshold for h in retrieval.admitted)
        plain = memory.ask("what is the capital of france ?", use_memory=False, max_new_tokens=4)
        base = generate_ids(
            tiny_lm, prompt_ids(tiny_lm, "what is the capital of france ?"), GenerationConfig(4)
        )
        assert plain.text == base
    with EditMemory.open(tmp_path / "m", lm=tiny_lm) as reopened:
        assert isinstance(reopened.sentinel, LearnedSentinel)
        assert np.allclose(reopened.sentinel.vector, encoder.sentinel_vector)
        assert reopened.retrieve("who is the ceo of acme ?").threshold == pytest.approx(retrieval.threshold)
        assert [r.edit_id for r in reopened.list()] == [added.edit_id]


def test_a_learned_sentinel_needs_a_trained_encoder(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    config = _config(tiny_recipe_dir, "encoder.name=hashing")
    with pytest.raises(ConfigError, match=r"sentinel\.kind=learned needs an encoder"):
        EditMemory.create(tmp_path / "m", config, lm=tiny_lm, encoder=HashingEncoder())


def test_the_trained_sentinel_margin_raises_the_memory_threshold(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    import json
    import shutil

    margined = tmp_path / "margined"
    shutil.copytree(tiny_recipe_dir, margined)
    settings = json.loads((margined / "recipe_config.json").read_text())
    settings["sentinel_margin"] = 0.3
    (margined / "recipe_config.json").write_text(json.dumps(settings))
    encoder = RecipeEncoder(str(margined))
    assert encoder.sentinel_margin == pytest.approx(0.3)
    with EditMemory.create(tmp_path / "m", _config(margined), lm=tiny_lm, encoder=encoder) as memory:
        query = encoder.encode_queries(["who is the ceo of acme ?"])[0]
        expected = float(query @ encoder.sentinel_vector) + 0.3
        assert memory.retrieve("who is the ceo of acme ?").threshold == pytest.approx(expected, abs=1e-5)
    with EditMemory.open(tmp_path / "m", lm=tiny_lm) as reopened:  # the margin is saved with the memory
        assert reopened.retrieve("who is the ceo of acme ?").threshold == pytest.approx(expected, abs=1e-5)

    # sentinel.margin overrides the trained margin for a new memory
    with EditMemory.create(
        tmp_path / "n", _config(margined, "sentinel.margin=-0.2"), lm=tiny_lm, encoder=encoder
    ) as loosened:
        looser = float(query @ encoder.sentinel_vector) - 0.2
        assert loosened.retrieve("who is the ceo of acme ?").threshold == pytest.approx(looser, abs=1e-5)


def test_a_long_edit_gets_its_prompt_from_the_long_checkpoint(
    tiny_lm: LanguageModel, tiny_recipe_dir: Path, tmp_path: Path
) -> None:
    from recall.backends.recipe.files import fact_prompts, save_knowledge

    main = load_knowledge(str(tiny_recipe_dir), tiny_lm)
    torch.manual_seed(7)  # another prompt head: the long model's prompts differ from the main one's
    save_knowledge(new_knowledge_model(main.settings, tiny_lm), tmp_path / "long")
    long = load_knowledge(str(tmp_path / "long"), tiny_lm)
    short = EditRecord(prompt="jane", target="", statement="jane")  # one token: within statement_tokens 3
    records = [RECORD, short]  # RECORD's statement has more than 3 tokens: long
    config = RecipeConfig(checkpoint=str(tiny_recipe_dir), long_checkpoint=str(tmp_path / "long"))
    backend = RecipeBackend(config, tiny_lm)
    with torch.inference_mode():
        made = backend._make_prompts(records)
        expected = [fact_prompts(long, tiny_lm, [("who is the ceo of acme ?", "jane doe")], limit=None)[0]]
        expected += [fact_prompts(main, tiny_lm, [("jane", "")], limit=None)[0]]
        alone = RecipeBackend(dataclasses.replace(config, long_checkpoint=None), tiny_lm)._make_prompts(
            records
        )
    assert all(torch.equal(m, e) for m, e in zip(made, expected, strict=True))
    assert not torch.equal(alone[0], made[0])  # without it, the main model makes the long prompt too
    assert torch.allclose(alone[1], made[1], atol=1e-5)  # encoded in another batch: rounding apart
    # the cache binds a prompt to the model that made it: another long_checkpoint remakes it
    backend.sync([])  # opening a memory: nothing cached, nothing active
    backend.sync(records)  # nothing cached yet: both made, each by its model
    assert all(torch.equal(backend._prompts[r.edit_id], m) for r, m in zip(records, made, strict=True))
    backend.sync(records)  # cached and bound to their makers: kept
    single = RecipeBackend(dataclasses.replace(config, long_checkpoint=None), tiny_lm)
    assert backend._bound(RECORD, *backend._makers([RECORD])) != single._bound(
        RECORD, *single._makers([RECORD])
    )
    prompt_only = tmp_path / "prompt-only"
    save_knowledge(
        new_knowledge_model(dataclasses.replace(main.settings, statement_tokens=0), tiny_lm), prompt_only
    )
    with pytest.raises(ConfigError, match="reads none"):
        RecipeBackend(dataclasses.replace(config, checkpoint=str(prompt_only)), tiny_lm)
