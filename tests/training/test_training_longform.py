"""Long answers in training (#32): WikiBio people as long edits, and a second stage that starts from a
trained knowledge model and trains its prompt head alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.config import RecipeTrainConfig
from training.errors import TrainingError
from training.longform_data import QUESTIONS, load_wikibio


def _wikibio(path: Path) -> Path:
    """Two people over three records, as KnowEdit writes WikiBio: the passage repeated, one label each."""
    passage = {
        "jane doe": "This is a Wikipedia passage about jane doe. Jane Doe (born 1950) is the ceo of acme.",
        "john smith": "This is a Wikipedia passage about john smith. John Smith is the author of paris.",
    }
    records = [
        {"concept": "jane doe", "text": passage["jane doe"], "labels": "She lives in london."},
        {"concept": "john smith", "text": passage["john smith"], "labels": "He is from france."},
        {"concept": "jane doe", "text": passage["jane doe"], "labels": "She wrote the capital."},
    ]
    path.write_text(json.dumps(records))
    return path


def test_each_person_is_one_long_edit_asked_in_two_wordings(tmp_path: Path) -> None:
    cases = load_wikibio(_wikibio(tmp_path / "wikibio.json"), 10, seed=0)
    assert [c.subject for c in cases] == ["Jane Doe", "John Smith"]  # first appearance, one case each
    jane = cases[0]
    # the opening sentence naming the passage is gone; every label follows the passage once
    assert (
        jane.target == "Jane Doe (born 1950) is the ceo of acme. She lives in london. She wrote the capital."
    )
    assert len(jane.rephrases) == 1
    assert jane.rephrases[0] != jane.prompt
    asked = {q.format(name="Jane Doe") for q in QUESTIONS}
    assert {jane.prompt, *jane.rephrases} <= asked
    assert load_wikibio(tmp_path / "wikibio.json", 10, seed=0) == cases  # the seed fixes the wording
    assert len(load_wikibio(tmp_path / "wikibio.json", 1, seed=0)) == 1


def test_a_file_that_is_not_wikibio_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "zsre.json").write_text(json.dumps([{"src": "who ?", "alt": "jane"}]))
    with pytest.raises(TrainingError, match="expected WikiBio keys"):
        load_wikibio(tmp_path / "zsre.json", 5, seed=0)
    with pytest.raises(TrainingError, match="cannot read"):
        load_wikibio(tmp_path / "missing.json", 5, seed=0)


def test_a_second_stage_trains_the_prompt_head_on_long_edits_and_keeps_the_retriever(
    tiny_recipe_config: Callable[..., RecipeTrainConfig], tmp_path: Path
) -> None:
    from training.recipe import run

    first = run(tiny_recipe_config(output_dir=str(tmp_path / "first"), epochs=1))
    second = run(
        tiny_recipe_config(
            output_dir=str(tmp_path / "second"),
            epochs=1,
            init_from=str(first),
            wikibio_train=str(_wikibio(tmp_path / "wikibio.json")),
            wikibio_records=2,
            statement_tokens=64,
            retriever_lr_scale=0.0,
            encoder_lr_scale=0.0,
        )
    )
    info = json.loads((second / "training.json").read_text())
    assert info["data"]["cases"]["wikibio"] == 2
    before, after = (
        load_file(str(first / "recipe.safetensors")),
        load_file(str(second / "recipe.safetensors")),
    )
    assert set(before) == set(after)  # the frozen retriever is still saved whole
    for name in before:
        moved = not torch.equal(before[name], after[name])
        assert moved == name.startswith("prompt_head."), name


def test_starting_from_a_model_of_another_shape_names_the_setting(
    tiny_recipe_config: Callable[..., RecipeTrainConfig], tiny_recipe_dir: Path
) -> None:
    from training.recipe import run

    with pytest.raises(TrainingError, match="knowledge_dim 32 \\(this run: 16\\)"):
        run(tiny_recipe_config(init_from=str(tiny_recipe_dir)))
