"""RECIPE training: the hinged losses, a tiny end-to-end run into the recipe backend, and config errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from recall.config.loader import build_dataclass
from recall.errors import ConfigError
from training.__main__ import main
from training.config import RecipeTrainConfig, load_train_config
from training.recipe import hinged_nll


def test_hinged_nll_counts_only_rows_not_yet_won_by_a_margin() -> None:
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # row 0 is won; row 1 is lost
    labels = torch.tensor([0, 0])
    lost_only = -torch.log_softmax(logits[1], -1)[0]
    assert torch.isclose(hinged_nll(logits, labels, 1.2), lost_only, atol=1e-6)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.isclose(hinged_nll(logits, labels, 0.0), plain, atol=1e-6)
    won = torch.tensor([[9.0, 0.0]])
    loss = hinged_nll(won.requires_grad_(), torch.tensor([0]), 1.2)
    assert loss.item() == 0.0
    loss.backward()  # type: ignore[no-untyped-call]  # still part of the graph: no special case upstream


def test_the_margin_lets_through_at_most_the_target_share() -> None:
    from training.recipe_gate import margin_for

    excess = torch.tensor([0.30, -0.10, 0.05, 0.20, -0.40, 0.10, 0.0, -0.2, 0.15, -0.05])
    assert margin_for(excess, 0.0) == pytest.approx(0.30)  # nothing above the largest
    assert margin_for(excess, 0.2) == pytest.approx(0.15)  # 2 of 10 above: 0.30 and 0.20
    assert int((excess > margin_for(excess, 0.2)).sum()) == 2
    assert margin_for(excess, 0.5) == 0.0  # never below RECIPE's own threshold
    assert margin_for(excess, 1.0) == 0.0


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="edit_batch"):
        load_train_config("recipe", ["edit_batch=100", "retrieval_batch=8"], "recipe")
    with pytest.raises(ConfigError, match="sentinel_false_accept must lie in"):
        load_train_config("recipe", ["sentinel_false_accept=2"], "recipe")
    with pytest.raises(ConfigError, match="unknown config key"):
        load_train_config("recipe", ["prompt_token=3"], "recipe")
    config = load_train_config("configs/train/recipe.yaml", [], "recipe")
    assert isinstance(config, RecipeTrainConfig)
    assert config.bundle_as == "recipe-smollm2-135m"


@pytest.mark.parametrize(
    ("artifact", "config"),
    [
        ("recipe-smollm2-135m", "configs/train/recipe.yaml"),  # stage one
        ("recipe-smollm2-135m-long", "configs/train/recipe_longform.yaml"),  # stage two, from stage one
    ],
)
def test_shipped_model_was_trained_with_the_shipped_config(artifact: str, config: str) -> None:
    """The README's rebuild command must describe the bundled model: every setting but where it was
    written matches the bundled training config (a changed recipe needs a retrained model)."""
    from recall.artifacts import artifact_info, resolve_artifact
    from recall.backends.recipe.files import CONFIG_FILE

    trained = artifact_info(resolve_artifact(artifact, CONFIG_FILE, "RECIPE knowledge model", ""))
    shipped = load_train_config(config, [], "recipe").to_dict()
    # settings added since the model was trained take their defaults, which must be what it ran with
    resolved = build_dataclass(RecipeTrainConfig, trained["config"], "").to_dict()
    where = {"output_dir", "bundle_as"}
    assert {k: v for k, v in resolved.items() if k not in where} == {
        k: v for k, v in shipped.items() if k not in where
    }


def test_cli_reports_a_bad_override_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "--set", "temperature=0"]) == 2
    assert "temperature and lr must be > 0" in capsys.readouterr().err


def test_training_writes_a_model_the_recipe_backend_serves(
    tiny_model_dir: Path, tiny_recipe_config: Callable[..., RecipeTrainConfig]
) -> None:
    from recall.backends import ScoreRequest
    from recall.backends.recipe.backend import RecipeBackend, RecipeConfig
    from recall.lm.loading import load_lm
    from recall.memory import EditMemory
    from training.recipe import run

    config = tiny_recipe_config()
    artifact = run(config)
    info = json.loads((artifact / "training.json").read_text())
    assert info["data"]["cases"] == {"zsre": 6, "counterfact": 6}
    assert info["examples"] == {"train": 10, "validation": 2}
    assert info["steps"] == 9  # 3 epochs x ceil(10 / 4) batches
    assert info["validation"][-1]["step"] == 9
    assert "gen_hit" in info["validation"][-1]
    assert (artifact / "README.md").is_file()
    gate = info["sentinel"]  # the margin calibrated on the held-out locality questions
    assert gate["keys"] == 4  # the 2 held-out edits x (statement, question)
    assert gate["margin"] >= 0.0
    assert gate["loc_false_accept"] <= gate["loc_false_accept_at_zero"]
    settings = json.loads((artifact / "recipe_config.json").read_text())
    assert settings["sentinel_margin"] == gate["margin"]

    base = load_lm(str(tiny_model_dir))
    backend = RecipeBackend(RecipeConfig(checkpoint=str(artifact)), base)
    memory_config = f"backend.checkpoint={artifact}"
    from recall.config import load_config

    overrides = [
        memory_config,
        f"encoder.name={artifact}",
        "backend.relevance=null",
        "backend.long_checkpoint=null",
    ]  # the probe is SmolLM2's
    cfg = load_config(backend="recipe", overrides=overrides)
    with EditMemory.temporary(cfg, lm=base) as memory:
        memory.add("who is the ceo of acme 1 ?", "jane doe")
        assert memory.count() == 1
    request = ScoreRequest("who is the ceo of acme 1 ?", "jane doe")
    assert backend.score_many([request])[0].target_ids  # the trained model serves scoring


def _ceo_edits(*, answer_by_company: bool) -> list[Any]:
    """Six edits "who is the ceo of <company> ?", answered "jane" or the company's own word."""
    from training.recipe_data import RecipeEdit

    edits = []
    for word in ["acme", "paris", "france", "jane", "doe", "london"]:
        answer = word if answer_by_company else "jane"
        question = f"who is the ceo of {word} ?"
        edits.append(
            RecipeEdit(
                f"{question} {answer}", question, f"ceo of {word} ?", "capital ?", "paris", answer, "t"
            )
        )
    return edits


def test_each_edit_is_trained_among_its_nearest_distractors(tiny_lm: Any, tiny_recipe_dir: Path) -> None:
    from recall.backends.recipe.files import edit_prompts, load_knowledge
    from training.recipe import prompt_blocks
    from training.recipe_data import tokenise

    model = load_knowledge(str(tiny_recipe_dir), tiny_lm)
    edits = _ceo_edits(answer_by_company=False)
    batch, _ = tokenise(tiny_lm, edits, 160)
    config = RecipeTrainConfig(
        edit_batch=4, retrieval_batch=6, distractor_mix=(0.0, 0.0, 1.0), conflict_rate=0.0
    )
    with torch.inference_mode():
        keys = model.encode([e.statement for e in edits], "key")
        own = edit_prompts(model, tiny_lm, [(e.rel, e.target) for e in edits], keys)
        made = prompt_blocks(tiny_lm, model, batch, keys, config)
        again = prompt_blocks(tiny_lm, model, batch, keys, config).other
    blocks = made.other
    assert len(blocks) == 4  # the first edit_batch edits
    assert all(torch.equal(a, b) for a, b in zip(made.rel, blocks, strict=True))  # no conflicts asked
    for index, block in enumerate(blocks):
        assert len(block) == 3 * len(own[index])  # its own prompt and exactly two distractors
        width = len(own[index])
        pieces = [block[k : k + width] for k in range(0, len(block), width)]
        assert sum(torch.equal(piece, own[index]) for piece in pieces) == 1
        assert all(any(torch.equal(piece, p) for p in own) for piece in pieces)
    assert all(torch.equal(a, b) for a, b in zip(blocks, again, strict=True))  # resumable: same draw
    alone = prompt_blocks(tiny_lm, model, batch, keys, dataclasses.replace(config, distractor_mix=(1.0,)))
    assert all(torch.equal(block, own[i]) for i, block in enumerate(alone.other))


def test_a_question_block_can_hold_a_conflicting_edit(tiny_lm: Any, tiny_recipe_dir: Path) -> None:
    from recall.backends.recipe.files import edit_prompts, load_knowledge
    from recall.lm.prompts import statement
    from training.recipe import prompt_blocks
    from training.recipe_data import tokenise

    model = load_knowledge(str(tiny_recipe_dir), tiny_lm)
    edits = _ceo_edits(answer_by_company=True)
    edits[5] = dataclasses.replace(edits[5], gen=edits[5].rel)  # no paraphrase: nothing to conflict with
    batch, _ = tokenise(tiny_lm, edits, 160)
    config = RecipeTrainConfig(
        edit_batch=6, retrieval_batch=6, distractor_mix=(0.0, 0.0, 1.0), conflict_rate=1.0
    )
    conflicting = [(e.gen, edits[(i + 1) % 6].target) for i, e in enumerate(edits)]
    with torch.inference_mode():
        keys = model.encode([e.statement for e in edits], "key")
        own = edit_prompts(model, tiny_lm, [(e.rel, e.target) for e in edits], keys)
        conflict = edit_prompts(
            model, tiny_lm, conflicting, model.encode([statement(*c) for c in conflicting], "key")
        )
        blocks = prompt_blocks(tiny_lm, model, batch, keys, config)
    width = len(own[0])
    for index, (rel, other) in enumerate(zip(blocks.rel, blocks.other, strict=True)):
        rel_pieces = [rel[k : k + width] for k in range(0, len(rel), width)]
        other_pieces = [other[k : k + width] for k in range(0, len(other), width)]
        assert len(rel_pieces) == len(other_pieces) == 3  # the conflict takes a distractor's place
        assert sum(torch.equal(p, own[index]) for p in rel_pieces) == 1
        assert not any(torch.allclose(p, c) for p in other_pieces for c in conflict)  # question only
        holds_conflict = any(torch.allclose(p, conflict[index]) for p in rel_pieces)
        assert holds_conflict == (index != 5)
