"""Fixtures for training tests: tiny train files (the tiny llama's folder is in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.config import RecipeTrainConfig


@pytest.fixture
def train_files(tmp_path: Path) -> dict[str, Path]:
    """Six zsRE and six CounterFact train records in the words the tiny tokenizer knows."""
    people = ["jane doe", "marta quinlan", "john smith"]
    zsre = [
        {
            "subject": f"acme {i}",
            "src": f"who is the ceo of acme {i} ?",
            "rephrase": f"who is the author of acme {i} ?",
            "alt": people[i % 3],
            "answers": [people[(i + 1) % 3]],
            "loc": "nq question: what is the largest planet ?",
            "loc_ans": "jupiter",
        }
        for i in range(6)
    ]
    counterfact = [
        {
            "case_id": i,
            "prompt": f"the capital of france {i} is",
            "subject": f"france {i}",
            "target_new": "lyon",
            "ground_truth": "paris",
            "rephrase_prompt": f"what is the capital of france {i} ?",
            "locality_prompt": "the largest planet is",
            "locality_ground_truth": "jupiter",
        }
        for i in range(6)
    ]
    paths = {"zsre": tmp_path / "zsre.json", "counterfact": tmp_path / "cf.json"}
    paths["zsre"].write_text(json.dumps(zsre))
    paths["counterfact"].write_text(json.dumps(counterfact))
    return paths


@pytest.fixture
def tiny_recipe_config(
    tiny_model_dir: Path, tiny_bert_dir: Path, train_files: dict[str, Path], tmp_path: Path
) -> Callable[..., RecipeTrainConfig]:
    """A RECIPE run on the tiny llama and BERT over `train_files` (10 train, 2 validation edits), small
    enough for a test; keyword arguments change any field."""

    def factory(**changes: Any) -> RecipeTrainConfig:
        fields: dict[str, Any] = {
            "model": str(tiny_model_dir),
            "encoder": str(tiny_bert_dir),
            "output_dir": str(tmp_path / "run"),
            "zsre_train": str(train_files["zsre"]),
            "counterfact_train": str(train_files["counterfact"]),
            "knowedit_train": (),
            "knowledge_dim": 16,
            "prompt_tokens": 2,
            "sentinel_tokens": 4,
            "trainable_layers": 1,
            "epochs": 3,
            "retrieval_batch": 4,
            "edit_batch": 2,
            "val_fraction": 0.2,
            "val_edits": 2,
            "eval_every": 2,
        }
        return RecipeTrainConfig(**{**fields, **changes})

    return factory
