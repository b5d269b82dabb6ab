"""Fixtures for training tests: tiny train files (the tiny llama's folder is in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


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
