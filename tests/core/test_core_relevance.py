"""The relevance review (recall/backends/review.py) on the tiny llama: probes written by hand, so that
what the review keeps is known in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from recall.backends.lte import LteBackend, LteConfig
from recall.backends.recipe.backend import RecipeBackend, RecipeConfig
from recall.backends.review import RelevanceProbe, load_probe, relevance_scores
from recall.cli.memory import explain
from recall.config import load_config
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.lm.lora import ArtifactError
from recall.lm.prompts import prompt_text
from recall.lm.scoring import prompt_ids
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder

QUESTION = "who is the ceo of acme ?"
PARAPHRASE = "who is the acme ceo ?"
UNRELATED = "what is the largest planet ?"


def write_probe(folder: Path, lm: LanguageModel, bias: float, **changes: Any) -> Path:
    """A probe whose score is sigmoid(bias) for every prompt (zero weight) unless `weight` is given."""
    settings: dict[str, Any] = {
        "layer": 1,
        "weight": torch.zeros(int(lm.model.config.hidden_size)),
        "bias": bias,
        "threshold": 0.5,
        "template": "dialog",
    }
    settings.update({k: v for k, v in changes.items() if k in settings})
    RelevanceProbe(**settings).save(folder, {"model_fingerprint": changes.get("fingerprint", lm.fingerprint)})
    return folder


def open_memory(path: Path, lm: LanguageModel, probe: Path) -> EditMemory:
    overrides = [
        "encoder.name=hashing",
        "model.name=tiny",
        "sentinel.min_cosine=-1",
        f"backend.relevance={probe}",
    ]
    return EditMemory.create(
        path, load_config(backend="lte", overrides=overrides), lm=lm, encoder=HashingEncoder()
    )


def test_a_declined_edit_is_neither_injected_nor_credited(tmp_path: Path, tiny_lm: LanguageModel) -> None:
    memory = open_memory(tmp_path / "memory", tiny_lm, write_probe(tmp_path / "no", tiny_lm, bias=-5.0))
    try:
        edit = memory.add(QUESTION, "jane doe")
        base = memory.ask(UNRELATED, use_memory=False, max_new_tokens=4)
        answer = memory.ask(UNRELATED, max_new_tokens=4)  # the open gate admits the edit; the review does not
        assert [h.record.edit_id for h in answer.retrieval.declined] == [edit.edit_id]
        assert not answer.used_memory
        assert (answer.text, answer.injected) == (base.text, "")
        assert answer.retrieval.verdict(answer.retrieval.hits[0]) == "declined"
        assert "declined" in explain(answer)
        # teacher-forced scoring takes the same route: the base model's scores
        assert memory.score(PARAPHRASE, "jane doe") == memory.score(PARAPHRASE, "jane doe", use_memory=False)
        # an edit asked word for word is used without review
        asked = memory.retrieve(QUESTION)
        assert [h.record.edit_id for h in asked.admitted] == [edit.edit_id]
        assert not asked.declined
    finally:
        memory.close()


def test_an_edit_the_probe_keeps_is_used(tmp_path: Path, tiny_lm: LanguageModel) -> None:
    memory = open_memory(tmp_path / "memory", tiny_lm, write_probe(tmp_path / "yes", tiny_lm, bias=5.0))
    try:
        edit = memory.add(QUESTION, "jane doe")
        answer = memory.ask(PARAPHRASE, max_new_tokens=4)
        assert [h.record.edit_id for h in answer.retrieval.admitted] == [edit.edit_id]
        assert not answer.retrieval.declined
        assert "jane doe" in answer.injected
    finally:
        memory.close()


@pytest.mark.parametrize("layer", [1, 2])  # the tiny llama has 2 layers: 1 stops early, 2 is the last
def test_scores_read_each_prompts_last_token_at_the_probe_layer(
    tmp_path: Path, tiny_lm: LanguageModel, layer: int
) -> None:
    torch.manual_seed(0)
    weight = 0.05 * torch.randn(int(tiny_lm.model.config.hidden_size))  # scores well inside (0, 1)
    probe = RelevanceProbe(layer, weight, 0.3, 0.5, "dialog")
    # prompts of different lengths in one batch: padding must not move the token read
    pairs = [
        (UNRELATED, (QUESTION, "jane doe")),
        (PARAPHRASE, ("who ?", "john smith")),
        ("acme ?", ("a", "b")),
    ]
    batched = relevance_scores(tiny_lm, probe, pairs)
    for (question, fact), score in zip(pairs, batched, strict=True):
        ids = torch.tensor([prompt_ids(tiny_lm, prompt_text(tiny_lm, question, [fact], "dialog"))])
        with torch.no_grad():
            states = tiny_lm.model(input_ids=ids, output_hidden_states=True).hidden_states  # L+1 of (1, T, d)
        expected = torch.sigmoid(states[layer][0, -1] @ weight + 0.3).item()
        assert score == pytest.approx(expected, abs=1e-5)
    assert len({round(s, 6) for s in batched}) == 3  # a real read, not a constant


def test_a_probe_for_another_model_or_template_is_refused(tmp_path: Path, tiny_lm: LanguageModel) -> None:
    other = write_probe(tmp_path / "other", tiny_lm, bias=0.0, fingerprint="someone-else")
    with pytest.raises(ArtifactError, match="fingerprint"):
        load_probe(str(other), tiny_lm)
    narrow = write_probe(tmp_path / "narrow", tiny_lm, bias=0.0, weight=torch.zeros(3))
    with pytest.raises(ArtifactError, match="hidden size"):
        load_probe(str(narrow), tiny_lm)
    with pytest.raises(ArtifactError, match="python -m training relevance"):
        load_probe(str(tmp_path / "missing"), tiny_lm)
    lte_form = write_probe(tmp_path / "lte", tiny_lm, bias=0.0, template="lte")
    with pytest.raises(ConfigError, match="template"):
        LteBackend(LteConfig(template="dialog", relevance=str(lte_form)), tiny_lm)


def test_review_within_skips_review_where_the_gate_is_sure(tmp_path: Path, tiny_lm: LanguageModel) -> None:
    probe = write_probe(tmp_path / "no", tiny_lm, bias=-5.0)  # declines whatever it reads
    memory = open_memory(tmp_path / "first", tiny_lm, probe)
    try:
        memory.add(QUESTION, "jane doe")
        near, far = memory.retrieve(PARAPHRASE), memory.retrieve(UNRELATED)
        assert near.declined
        assert far.declined
        excess = [r.declined[0].score - r.threshold for r in (near, far)]  # how far each beat the gate
    finally:
        memory.close()
    assert excess[0] > excess[1]
    within = (excess[0] + excess[1]) / 2
    overrides = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=-1"]
    overrides += [f"backend.relevance={probe}", f"retrieval.review_within={within}"]
    config = load_config(backend="lte", overrides=overrides)
    memory = EditMemory.create(tmp_path / "second", config, lm=tiny_lm, encoder=HashingEncoder())
    try:
        edit = memory.add(QUESTION, "jane doe")
        sure = memory.retrieve(PARAPHRASE)  # beat the cut-off by more than `within`: used unreviewed
        assert [h.record.edit_id for h in sure.admitted] == [edit.edit_id]
        assert not sure.declined
        unsure = memory.retrieve(UNRELATED)  # closer to the cut-off: reviewed, and declined
        assert not unsure.admitted
        assert [h.record.edit_id for h in unsure.declined] == [edit.edit_id]
    finally:
        memory.close()


def test_the_recipe_backend_reviews_with_a_probe_of_the_frozen_model(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_recipe_dir: Path
) -> None:
    from recall.backends.recipe.encoder import RecipeEncoder

    probe = write_probe(tmp_path / "no", tiny_lm, bias=-5.0)
    overrides = [
        f"backend.checkpoint={tiny_recipe_dir}",
        "backend.long_checkpoint=null",
        f"encoder.name={tiny_recipe_dir}",
        "model.name=tiny",
    ]
    # the gate admits everything, and every admitted query is reviewed
    overrides += ["sentinel.margin=-2", "retrieval.review_within=null", f"backend.relevance={probe}"]
    config = load_config(backend="recipe", overrides=overrides)
    encoder = RecipeEncoder(str(tiny_recipe_dir))
    with EditMemory.create(tmp_path / "memory", config, lm=tiny_lm, encoder=encoder) as memory:
        edit = memory.add(QUESTION, "jane doe")
        base = memory.ask(UNRELATED, use_memory=False, max_new_tokens=4)
        answer = memory.ask(UNRELATED, max_new_tokens=4)
        assert [h.record.edit_id for h in answer.retrieval.declined] == [edit.edit_id]
        assert (answer.text, answer.injected, answer.used_memory) == (base.text, "", False)
        assert memory.score(UNRELATED, "jane doe") == memory.score(UNRELATED, "jane doe", use_memory=False)
        assert memory.retrieve(QUESTION).admitted  # asked word for word: not reviewed
    other = write_probe(tmp_path / "other", tiny_lm, bias=0.0, fingerprint="someone-else")
    with pytest.raises(ArtifactError, match="fingerprint"):
        RecipeBackend(RecipeConfig(checkpoint=str(tiny_recipe_dir), relevance=str(other)), tiny_lm)
