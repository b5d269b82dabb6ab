"""MQuAKE records: one case per edit, multi-hop questions as portability of the first case, --n in records."""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from eval_fakes import FakeMemory

from recall.cli.eval import add_eval_arguments, run_eval_command
from recall.datasets.cases import DatasetError, EvalCase
from recall.datasets.loading import load_cases, load_dataset
from recall.eval.protocols import run_protocol
from recall.eval.settings import EvalSettings
from recall.interface import MemoryInterface


def rewrite(template: str, subject: str, new: str, true: str, question: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "prompt": template,
        "relation_id": "P1",
        "subject": subject,
        "target_new": {"str": new, "id": "Q1"},
        "target_true": {"str": true, "id": "Q2"},
    }
    if question is not None:
        item["question"] = question
    return item


def record(
    case_id: int, rewrites: list[dict[str, Any]], questions: list[str], new_answer: str
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "requested_rewrite": rewrites,
        "questions": questions,
        "answer": "old",
        "answer_alias": [],
        "new_answer": new_answer,
        "new_answer_alias": [new_answer.lower()],
        "single_hops": [],
        "new_single_hops": [],
    }


# Under FakeMemory (word-overlap retrieval, threshold 0.5), after both edits of record 11 the first
# multi-hop question overlaps the second edit's question 6/10, so it is answered "Arabic"; the second
# question overlaps no edit prompt by half, so it is not. Port of record 11 is therefore 50%.
RECORDS = [
    record(
        11,
        [
            rewrite("{} was performed by", "Hey Jude", "Madonna", "The Beatles", "Who performed Hey Jude?"),
            rewrite(
                "The official language of {} is",
                "Madonna",
                " Arabic ",
                "English",
                "What is the official language of Madonna?",
            ),
        ],
        [
            "What is the official language of the performer of Hey Jude?",
            "Which tongue is spoken where that singer of Hey Jude lives?",
        ],
        "Arabic",
    ),
    # no "question": the template with the subject filled in is the prompt
    record(
        12,
        [rewrite("{} is a citizen of", "Ellie Kemper", "Croatia", "USA", None)],
        ["Who rules there?"],
        "Kolinda",
    ),
    record(
        13,
        [
            rewrite("{} plays", "Ann", "chess", "go", "What does Ann play?"),
            rewrite("{} lives in", "Bo", "Oslo", "Rome", "Where does Bo live?"),
            rewrite("{} owns", "Cy", "a boat", "a car", "What does Cy own?"),
        ],
        ["What game does Ann play with Bo?"],
        "chess",
    ),
]


def write(path: Path, records: list[Any]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def mquake_file(tmp_path: Path) -> Path:
    return write(tmp_path / "mquake.json", RECORDS)


def test_one_case_per_rewrite_with_portability_on_the_first(mquake_file: Path) -> None:
    dataset = load_dataset(mquake_file)
    assert dataset.format == "mquake"  # detected from the keys
    assert (dataset.num_records, dataset.records_used) == (3, 3)
    assert [c.case_id for c in dataset.cases] == ["11/0", "11/1", "12/0", "13/0", "13/1", "13/2"]
    first, second = dataset.cases[:2]
    assert first == EvalCase(
        case_id="11/0",
        prompt="Who performed Hey Jude?",
        target="Madonna",
        subject="Hey Jude",
        ground_truth="The Beatles",
        portability=(
            ("What is the official language of the performer of Hey Jude?", "Arabic"),
            ("Which tongue is spoken where that singer of Hey Jude lives?", "Arabic"),
        ),
    )
    assert (second.prompt, second.target, second.ground_truth) == (
        "What is the official language of Madonna?",
        "Arabic",  # stripped
        "English",
    )
    assert dataset.cases[2].prompt == "Ellie Kemper is a citizen of"  # template fallback
    assert all(c.rephrases == () and c.locality == () for c in dataset.cases)
    # each multi-hop question is attached once, to the first case of its record
    assert [bool(c.portability) for c in dataset.cases] == [True, False, True, True, False, False]


def test_n_counts_records_not_cases(mquake_file: Path) -> None:
    dataset = load_dataset(mquake_file, n=2)
    assert dataset.records_used == 2
    assert [c.case_id for c in dataset.cases] == ["11/0", "11/1", "12/0"]
    assert len(load_cases(mquake_file, n=1)) == 2
    shuffled = load_dataset(mquake_file, n=1, shuffle_seed=1).cases
    assert len({c.case_id.split("/")[0] for c in shuffled}) == 1  # a record's edits stay together


def test_record_with_an_empty_target_is_skipped_whole(tmp_path: Path) -> None:
    records = copy.deepcopy(RECORDS)
    records[0]["requested_rewrite"][1]["target_new"]["str"] = " "
    dataset = load_dataset(write(tmp_path / "m.json", records), n=2)
    assert dataset.skipped == (0,)
    assert [c.case_id for c in dataset.cases] == ["12/0", "13/0", "13/1", "13/2"]


def _break_target(r: dict[str, Any]) -> None:
    del r["requested_rewrite"][1]["target_new"]["str"]


def _no_rewrites(r: dict[str, Any]) -> None:
    r["requested_rewrite"] = []


def _rewrite_not_an_object(r: dict[str, Any]) -> None:
    r["requested_rewrite"][0] = "Hey Jude -> Madonna"


def _no_questions(r: dict[str, Any]) -> None:
    del r["questions"]


def _no_question_nor_slot(r: dict[str, Any]) -> None:
    del r["requested_rewrite"][0]["question"]
    r["requested_rewrite"][0]["prompt"] = "Hey Jude was performed by"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_break_target, r"record 1: requested_rewrite\[1\]\.target_new: missing key 'str'"),
        (_no_rewrites, r"record 1: key 'requested_rewrite' should be a non-empty list"),
        (_rewrite_not_an_object, r"record 1: requested_rewrite\[0\]: expected a JSON object, got str"),
        (_no_questions, r"record 1: key 'questions' should be a non-empty list"),
        (_no_question_nor_slot, r"record 1: requested_rewrite\[0\]: no 'question', and 'prompt' has no"),
    ],
)
def test_malformed_record_names_record_and_field(tmp_path: Path, breakage: Any, message: str) -> None:
    records = [copy.deepcopy(RECORDS[0]) for _ in range(2)]
    breakage(records[1])
    path = write(tmp_path / "bad.json", records)
    with pytest.raises(DatasetError, match=r"bad\.json: " + message):
        load_cases(path, "mquake")
    assert len(load_cases(path, "mquake", n=1)) == 2  # records past n are not checked


def test_counterfact_forced_on_mquake_suggests_mquake(mquake_file: Path) -> None:
    with pytest.raises(DatasetError, match="try --format mquake or auto"):
        load_cases(mquake_file, "counterfact")


def test_sequential_scores_multi_hop_after_all_edits(mquake_file: Path) -> None:
    cases = load_cases(mquake_file, n=1)
    memory = FakeMemory()
    summary = run_protocol(memory, cases, EvalSettings(), progress=False).summary
    assert summary["n"] == 2
    assert summary["Port"] == pytest.approx(50.0)  # one record, one of its two questions answered
    assert summary["Rel"] == pytest.approx(100.0)
    # no rephrases or locality: those metrics are absent, not 0
    for key in ("Gen", "Loc", "PS", "NS", "S", "gen_em_rephrase", "retrieval_top1_rephrase"):
        assert summary[key] is None, key
    assert summary["gate_false_accept_loc"] is None
    # single tests the first case before the second edit exists: the chain is broken
    single = run_protocol(FakeMemory(), cases, EvalSettings(protocol="single"), progress=False).summary
    assert single["Port"] == pytest.approx(0.0)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recall eval")
    add_eval_arguments(parser)
    return parser.parse_args(list(argv))


def test_eval_command_on_mquake(
    tmp_path: Path, mquake_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    memories: list[FakeMemory] = []

    def make(backend: str, overrides: list[str]) -> MemoryInterface:
        memories.append(FakeMemory())
        return memories[-1]

    out = tmp_path / "reports"
    common = ("--data", str(mquake_file), "--n", "2", "--no-progress", "--out", str(out))
    assert run_eval_command(parse(*common, "--protocol", "sequential"), make) == 0
    # every edit of the 2 records (3 cases) was made before the first probe
    assert set(memories[0].size_at_test) == {3}
    (json_path,) = out.glob("*.json")
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["summary"]["n"] == 3
    assert document["summary"]["Loc"] is None
    assert document["stamp"]["n"] == 3
    assert document["stamp"]["data"]["records_used"] == 2
    assert document["stamp"]["data"]["format"] == "mquake"
    printed = capsys.readouterr().out
    assert "n=3" in printed
    assert "· 2 records" in printed
    assert "| Loc | – |" in printed

    with caplog.at_level(logging.WARNING, logger="recall.cli.eval"):
        assert run_eval_command(parse(*common, "--protocol", "single", "--no-generation"), make) == 0
    assert "use --protocol sequential" in caplog.text


def test_help_says_n_counts_records(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "use the first N records" in text
    assert "--format {auto,zsre,counterfact,knowedit,mquake,unke,jsonl}" in text


def test_real_mquake_subset(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "mquake/MQuAKE-CF_AKEW-subset.json", n=100)
    assert dataset.format == "mquake"
    assert (dataset.num_records, dataset.records_used, len(dataset.cases)) == (354, 100, 123)
    assert sum(bool(c.portability) for c in dataset.cases) == 100
    first = dataset.cases[0]
    assert first.case_id == "1/0"
    assert (first.prompt, first.target) == ("What is the country of citizenship of Ellie Kemper?", "Croatia")
    assert first.portability[0] == (
        "Who is the head of state of the country where Ellie Kemper holds a citizenship?",
        "Kolinda Grabar-Kitarović",
    )
    hard = load_dataset(shared_data / "mquake/MQuAKE-hard.json", n=10)
    assert len(hard.cases) == 40  # every hard record has 4 edits
