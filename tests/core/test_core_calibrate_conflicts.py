"""`recall calibrate --conflicts`: which question pairs count as the same fact or the same subject, the
nearest edit about another subject, the table, and one run through the CLI with the hashing encoder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recall.cli.calibrate.conflicts import (
    conflict_table,
    nearest_other_subject,
    pair_cosines,
    question_keys,
    question_pairs,
)
from recall.cli.main import main
from recall.datasets.cases import EvalCase
from recall.retrieval.encoder import HashingEncoder

CASES = [
    EvalCase("0", "Who is the CEO of Acme?", "Jane Doe", "Acme", rephrases=("Who runs Acme?",)),
    EvalCase(
        "1",
        "Which person leads Acme?",
        "John Smith",
        "acme",  # the same subject, normalised
        locality=(("Where is Acme based?", "Ohio"), ("Where is Acmeville?", "Texas"), ("Who is Bo?", "x")),
    ),
    EvalCase("2", "Who heads Acme as CEO?", "jane doe", "Acme"),  # case 0's answer: not another fact
    EvalCase("3", "What is the capital of France?", "Lyon", "France"),
    EvalCase("4", "Who wrote Hamlet?", "Marlowe"),  # no subject
]


def test_pairs_are_rephrases_same_subject_edits_with_other_answers_and_locality_naming_the_subject() -> None:
    pairs = question_pairs(CASES)
    assert pairs["same fact"] == [
        ("Who is the CEO of Acme?", "Who runs Acme?"),
        ("Who is the CEO of Acme?", "Which person leads Acme?"),
        ("Which person leads Acme?", "Who heads Acme as CEO?"),
    ]
    # "Acmeville" does not name "Acme"; the question about Bo names no subject of the case.
    assert pairs["same subject, other question"] == [("Which person leads Acme?", "Where is Acme based?")]


def test_nearest_other_subject_skips_edits_of_the_same_subject_and_without_one() -> None:
    encoder = HashingEncoder()
    nearest = nearest_other_subject(question_keys(encoder, [c.prompt for c in CASES]), CASES)
    keys = encoder.encode_keys([c.prompt for c in CASES[:4]])
    # Each Acme edit's only other-subject edit is France's; France's nearest is the best Acme one.
    expected = [float(keys[i] @ keys[3]) for i in range(3)] + [
        max(float(keys[3] @ keys[i]) for i in range(3))
    ]
    np.testing.assert_allclose(nearest, expected, rtol=1e-5)


class CountingEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode_keys(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += texts
        return super().encode_keys(texts)


def test_each_question_is_encoded_once_and_pairs_score_by_cosine() -> None:
    encoder = CountingEncoder()
    pairs = question_pairs(CASES)["same fact"]  # "Who is the CEO of Acme?" is in two pairs
    keys = question_keys(encoder, [c.prompt for c in CASES] + [t for pair in pairs for t in pair])
    assert sorted(encoder.seen) == sorted({c.prompt for c in CASES} | {"Who runs Acme?"})
    plain = HashingEncoder()
    expected = [float(plain.encode_keys([a])[0] @ plain.encode_keys([b])[0]) for a, b in pairs]
    np.testing.assert_allclose(pair_cosines(keys, pairs), expected, rtol=1e-5)


def test_table_gives_the_share_at_or_above_each_cut_off() -> None:
    lines = conflict_table({"a": np.array([0.7, 0.8, 0.95, 0.99]), "b": np.zeros(0)})
    assert lines[0].startswith("| pairs | n | >= 0.7 | >= 0.75 | >= 0.8 |")
    assert lines[2] == "| a | 4 | 1.000 | 0.750 | 0.750 | 0.500 | 0.500 | 0.500 |"
    assert lines[3] == "| b | 0 | - | - | - | - | - | - |"


def test_cli_prints_the_table_for_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "edits.jsonl"
    rows = [
        {"prompt": c.prompt, "target": c.target, "subject": c.subject, "rephrases": list(c.rephrases)}
        for c in CASES
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code = main(["calibrate", "--conflicts", "--data", str(data), "--set", "encoder.name=hashing"])
    assert code == 0
    out = capsys.readouterr().out
    assert "5 records of edits.jsonl, question keys from hashing" in out
    assert "| same fact | 3 |" in out
    assert "| nearest edit about another subject | 4 |" in out


def test_cli_refuses_review_and_conflicts_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--conflicts", "--review", "--data", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "not allowed with argument --conflicts" in err
