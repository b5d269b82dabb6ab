"""Cases whose subject another case in memory edits with another target: the flag, and the subset
summaries and report table built on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from eval_fakes import FakeMemory
from eval_samples import BASE_ANSWERS, SIMPLE_CASES, TRICKY_CASES

from recall.datasets.cases import EvalCase, locality_names_edited, shared_subjects
from recall.datasets.loading import load_dataset
from recall.eval.protocols import EvalResult, run_protocol
from recall.eval.report import build_stamp, format_markdown, load_report, write_report
from recall.eval.settings import EvalSettings


def _case(case_id: str, subject: str | None, target: str) -> EvalCase:
    return EvalCase(case_id=case_id, prompt=f"Question {case_id}?", target=target, subject=subject)


def _with_subjects(cases: Sequence[EvalCase], subjects: dict[str, str]) -> list[EvalCase]:
    return [dataclasses.replace(c, subject=subjects.get(c.case_id)) for c in cases]


def evaluate(cases: Sequence[EvalCase], **kwargs: object) -> EvalResult:
    settings = EvalSettings(**kwargs)  # type: ignore[arg-type]
    return run_protocol(FakeMemory(BASE_ANSWERS), cases, settings, progress=False)


def test_shared_subjects_needs_the_same_subject_with_another_target() -> None:
    cases = [
        _case("a", "Jane Rolfe", "Babur"),
        _case("b", "jane  rolfe.", "Boris I"),  # normalised like an answer: the same subject
        _case("c", "Jane Rolfe", "babur"),  # the same target as "a" (normalised): but "b" differs
        _case("d", "Dingo Creek", "Bass Strait"),
        _case("e", "Dingo Creek", "Bass Strait."),  # one answer given twice is no conflict
        _case("f", None, "Paris"),
    ]
    assert shared_subjects(cases) == [True, True, True, False, False, None]


# d and e (TRICKY_CASES) name one subject with two targets; e's rephrase retrieves nothing (Gen 0).
SUBJECTS = {"a": "Acme Corp", "b": "Zed", "c": "Quux Labs", "d": "Freedonia", "e": "freedonia"}


def test_sequential_reports_shared_subject_cases_apart() -> None:
    result = evaluate(_with_subjects(TRICKY_CASES, SUBJECTS))
    assert [r.shared_subject for r in result.rows] == [False, False, False, True, True]
    distinct, shared = result.subsets["distinct_subject"], result.subsets["shared_subject"]
    assert (distinct["n"], shared["n"]) == (3, 2)
    assert distinct["Gen"] == pytest.approx(100.0)
    assert shared["Gen"] == pytest.approx(50.0)  # d 1, e 0
    assert shared["gate_false_accept_loc"] == pytest.approx(50.0)  # d's France question
    assert result.summary["Gen"] == pytest.approx(80.0)  # the whole run is unchanged


def test_chunked_protocols_flag_only_cases_in_memory_together() -> None:
    cases = _with_subjects(TRICKY_CASES, SUBJECTS)
    together = evaluate(cases, protocol="batch", batch_size=3)  # chunks a b c | d e
    assert [r.shared_subject for r in together.rows] == [False, False, False, True, True]
    split = evaluate([*cases[:3], cases[4], cases[3]], protocol="batch", batch_size=4)  # a b c e | d
    assert [r.shared_subject for r in split.rows] == [False] * 5
    assert split.subsets == {}
    single = evaluate(cases, protocol="single")
    assert {r.shared_subject for r in single.rows} == {False}
    assert single.subsets == {}


def test_cases_without_subjects_have_no_subsets() -> None:
    result = evaluate(SIMPLE_CASES)
    assert {r.shared_subject for r in result.rows} == {None}
    assert result.subsets == {}


def test_a_locality_prompt_names_an_edited_subject_word_for_word() -> None:
    def case(case_id: str, subject: str | None, locality: str | None) -> EvalCase:
        asked = ((locality, "x"),) if locality else ()
        return EvalCase(case_id=case_id, prompt="q", target="t", subject=subject, locality=asked)

    cases = [
        case("a", "Bordeaux", "Bordeaux is a twin city of"),  # its own subject: the same fact, in memory
        case("b", "Danielle Darrieux", "The mother tongue of Lyon is"),  # c's subject
        case("c", "Lyon", "The mother tongue of danielle  darrieux, is"),  # a's? no: b's, case aside
        case("d", "Rome", "Romeo was born in"),  # a word, not a prefix
        case("e", None, None),
    ]
    assert locality_names_edited(cases) == [True, True, True, False, None]
    assert locality_names_edited(cases[3:]) == [False, None]


def test_sequential_reports_locality_prompts_about_edited_subjects_apart() -> None:
    # "d" asks "What is the capital of France?" beside an edit whose subject is France
    result = evaluate(_with_subjects(TRICKY_CASES, {"a": "France"}))
    flags = [r.loc_names_edited for r in result.rows]
    assert flags.count(True) == 1
    unedited, edited = result.subsets["locality_unedited"], result.subsets["locality_edited"]
    assert (unedited["n"], edited["n"]) == (len(flags) - 1, 1)
    assert "distinct_subject" not in result.subsets  # no subject has two targets


def test_report_shows_the_subsets(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"prompt": "Who leads Acme Corp?", "target": "Jane Doe"}\n')
    dataset = load_dataset(path)
    result = evaluate(_with_subjects(TRICKY_CASES, SUBJECTS))
    stamp = build_stamp({"backend": "fake"}, dataset, result.settings, ["recall", "eval"])
    markdown = format_markdown(result, stamp)
    assert "| cases | n | Rel | Gen |" in markdown
    assert "| shared_subject | 2 | 100.00 | 50.00 |" in markdown
    assert "- distinct_subject: cases whose subject no other case" in markdown
    json_path, _ = write_report(result, tmp_path / "out", stamp)
    document = load_report(json_path)
    assert document["subsets"]["distinct_subject"]["n"] == 3
    assert set(document["subset_keys"]) == {"distinct_subject", "shared_subject"}
    plain = evaluate(SIMPLE_CASES)
    assert "| cases |" not in format_markdown(plain, stamp)
