"""`recall eval --target-words LOW-HIGH`: only records whose targets have that many words, counted by --n."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recall.cli.eval import word_range
from recall.datasets.loading import load_dataset
from recall.errors import ConfigError


def _zsre(path: Path, targets: list[str]) -> Path:
    records = [
        {
            "src": f"question {i}?",
            "answers": [t],
            "rephrase": f"rephrase {i}?",
            "alt": t,
            "loc": "nq question: x",
            "loc_ans": "y",
            "subject": f"s{i}",
        }
        for i, t in enumerate(targets)
    ]
    path.write_text(json.dumps(records))
    return path


def test_only_records_with_targets_of_that_many_words_are_taken(tmp_path: Path) -> None:
    targets = ["one", "a b c d e", "one two", "w " * 24 + "w", "x " * 30 + "x", "p q r s t u"]
    path = _zsre(tmp_path / "z.json", targets)
    dataset = load_dataset(path, "zsre", target_words=(5, 25))
    assert [c.target for c in dataset.cases] == [targets[1], targets[3].strip(), targets[5]]
    assert dataset.target_words == (5, 25)
    first_two = load_dataset(path, "zsre", n=2, target_words=(5, 25))
    assert [c.target for c in first_two.cases] == [targets[1], targets[3].strip()]
    assert len(load_dataset(path, "zsre").cases) == len(targets)


@pytest.mark.parametrize("text", ["5", "25-5", "0-3", "a-b", "5-"])
def test_a_bad_range_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--target-words"):
        word_range(text)
    assert word_range("5-25") == (5, 25)
