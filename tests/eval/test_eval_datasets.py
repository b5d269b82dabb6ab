"""Loaders on the first records of the staged benchmark files, on jsonl, and on malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recall.datasets.cases import DatasetError, EvalCase
from recall.datasets.loading import file_sha256, load_cases, load_dataset


def test_zsre_portability_first_record(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "zsre/zsre_mend_eval_portability_gpt4.json", n=3)
    assert dataset.format == "zsre"
    assert dataset.num_records == 1037
    assert len(dataset.cases) == 3
    case = dataset.cases[0]
    assert case == EvalCase(
        case_id="0",
        prompt="When was the inception of IAAF Combined Events Challenge?",
        target="2006",
        subject="IAAF Combined Events Challenge",
        ground_truth="1998",
        rephrases=("When was the IAAF Combined Events Challenge launched?",),
        # the "nq question: " prefix is stripped
        locality=(("what is the name of the last episode of spongebob", "The String"),),
        portability=(
            (
                "What type of sports event is the IAAF Combined Events Challenge, "
                "which was established in 2006?",
                "Athletics",
            ),
        ),
    )


def test_zsre_noops_are_kept_and_flagged(shared_data: Path) -> None:
    cases = load_cases(shared_data / "zsre/zsre_mend_eval_portability_gpt4.json")
    assert len(cases) == 1037
    # DATA.md: alt == answers[0] in 28 records; one more once the stray space is stripped, one more by case
    assert sum(c.is_noop for c in cases) == 30
    assert all(c.target == c.target.strip() for c in cases)
    assert not any(p.startswith("nq question:") for c in cases for p, _ in c.locality)


def test_zsre_train_strips_targets_and_skips_empty_ones(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "zsre/zsre_mend_train_1k.json")
    assert dataset.cases[0].prompt == "What is the product made by UniFirst?"
    assert dataset.cases[0].target == "unmanned aircraft"
    assert dataset.cases[0].portability == ()
    assert dataset.skipped == (534, 723)  # alt == "" in the file
    assert len(dataset.cases) == 998


def test_counterfact_easyedit_form(shared_data: Path) -> None:
    case = load_cases(shared_data / "counterfact/counterfact-edit.json", n=2)[0]
    assert case.case_id == "0"
    assert case.prompt == "The mother tongue of Danielle Darrieux is"
    assert (case.target, case.ground_truth, case.subject) == ("English", "French", "Danielle Darrieux")
    assert case.rephrases == ("Where Danielle Darrieux is from, people speak the language of",)
    assert case.locality == (("Michel Rocard is a native speaker of", "French"),)


def test_counterfact_rome_form(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "counterfact/counterfact_portability_gpt4.json", "counterfact", n=2)
    case = dataset.cases[0]
    assert case.case_id == "4482"
    assert case.prompt == "Spike Hughes originates from"  # "{} originates from" filled in
    assert (case.target, case.ground_truth) == ("Philadelphia", "London")
    assert len(case.rephrases) == 2
    assert len(case.locality) == 10
    assert case.locality[0] == ("Max Mosley originates from", "London")  # neighbours keep the true object
    assert case.portability == (
        ("What famous food is associated with the city where Spike Hughes originates from?", "Cheesesteaks"),
    )


def test_knowedit_zsre(shared_data: Path) -> None:
    dataset = load_dataset(shared_data / "knowedit/ZsRE-test-all.json", n=2)
    assert dataset.format == "knowedit"
    case = dataset.cases[0]
    assert (case.prompt, case.target) == ("Which family does Epaspidoceras belong to?", "Noctuidae")
    assert case.ground_truth == "Aspidoceratidae"  # ["Aspidoceratidae"] normalised
    assert case.rephrases == ("What family are Epaspidoceras?",)
    assert case.locality == (
        ("The taxon rank of Epaspidoceras is", "genus"),
        ("Epaspidoceras taxon rank", "genus"),
    )
    assert case.portability == (
        ("What is the common name for the family Epaspidoceras belongs to?", "Owlet moths"),
    )


def test_knowedit_wiki_counterfact_alias_lists(shared_data: Path) -> None:
    case = load_cases(shared_data / "knowedit/wiki_counterfact_test_cf.json", n=1)[0]
    assert (case.target, case.ground_truth) == ("Syria", "United States of America")
    assert case.rephrases == ("Leonardo DiCaprio's country of citizenship is known as",)
    assert case.locality[0] == ("The name of the mother of Leonardo DiCaprio is", "Irmelin DiCaprio")
    assert case.portability[0][1] == "Syrian pound"  # [["Syrian pound", "SYP", ...]] -> first alias
    assert len(case.locality) > 2
    assert len(case.portability) > 2


def test_knowedit_wiki_recent_has_no_ground_truth(shared_data: Path) -> None:
    cases = load_cases(shared_data / "knowedit/wiki_recent_train.json", n=5)
    case = cases[0]
    assert (case.prompt, case.target) == ("The gender of Ingrīda Amantova is", "female")
    assert case.ground_truth is None
    assert case.portability == ()  # "portability": {}
    assert case.locality[0] == ("The place of birth of Ingrīda Amantova is", "Cēsis")
    assert len(case.locality) == 5
    # record 3 has ground truths like [[], ["Honorary Doctor ..."]]: the first non-empty alias is used
    assert all(answer for c in cases for _, answer in c.locality)


def test_file_sha256_matches_data_md(shared_data: Path) -> None:
    path = shared_data / "zsre/zsre_mend_train_1k.json"
    expected = "e62596101d8ed551889c26c0d2a5277f92eaef3b14416d8eaee39b04a244ab60"
    assert file_sha256(path) == expected
    assert load_dataset(path, n=1).sha256 == expected


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_jsonl_all_fields(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "cases.jsonl",
        [
            {
                "case_id": 7,
                "prompt": "Who leads Acme?",
                "target": " Jane Doe ",
                "subject": "Acme",
                "ground_truth": "John Roe",
                "rephrases": ["Acme's boss is?", "Who runs Acme?"],
                "locality": [["Who wrote Hamlet?", "Shakespeare"]],
                "portability": [["Who leads Acme's parent?", "Jane Doe"]],
            },
            {"prompt": "Capital of Zed?", "target": "Zedville", "rephrases": "Zed's capital?"},
        ],
    )
    dataset = load_dataset(path)
    assert dataset.format == "jsonl"
    first, second = dataset.cases
    assert first == EvalCase(
        case_id="7",
        prompt="Who leads Acme?",
        target="Jane Doe",
        subject="Acme",
        ground_truth="John Roe",
        rephrases=("Acme's boss is?", "Who runs Acme?"),
        locality=(("Who wrote Hamlet?", "Shakespeare"),),
        portability=(("Who leads Acme's parent?", "Jane Doe"),),
    )
    assert second.case_id == "1"  # no case_id: the record index
    assert second.rephrases == ("Zed's capital?",)


def test_json_list_of_jsonl_records_and_shuffle(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(
        json.dumps([{"prompt": f"q{i}?", "target": f"a{i}"} for i in range(20)]), encoding="utf-8"
    )
    assert [c.case_id for c in load_cases(path, n=3)] == ["0", "1", "2"]
    shuffled = load_dataset(path, n=5, shuffle_seed=0).cases
    assert [c.case_id for c in shuffled] == [c.case_id for c in load_dataset(path, n=5, shuffle_seed=0).cases]
    assert [c.case_id for c in shuffled] != ["0", "1", "2", "3", "4"]


def test_missing_key_names_file_record_and_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a?", "target": "b"}, {"prompt": "c?"}])
    with pytest.raises(DatasetError, match=r"bad\.jsonl: record 1: missing key 'target'"):
        load_cases(path, "jsonl")


def test_explicit_format_that_does_not_fit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cases.jsonl", [{"prompt": "a?", "target": "b"}])
    with pytest.raises(DatasetError, match=r"record 0: missing key .*try --format jsonl or auto"):
        load_cases(path, "zsre")


def test_zsre_answers_must_be_a_list(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "z.jsonl", [{"src": "q?", "alt": "x", "answers": "y", "rephrase": "r?"}])
    with pytest.raises(DatasetError, match="'answers' should be a non-empty list"):
        load_cases(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no records"),
        ("[]", "holds no records"),
        ("[{", "invalid JSON at line 1"),
        ('{"prompt": "a", "target": "b"}\nnot json\n', "line 2 is not a JSON object"),
        ('[{"foo": 1}]', "cannot tell the data format"),
        ('["just a string"]', "expected a JSON object"),
        ('{"prompt": "a?", "target": "b", "locality": [["only one"]]}', "pair"),
        ('{"concept": "x", "text": "t", "labels": "l"}', "WikiBio"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_cases(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such data file"):
        load_cases(tmp_path / "absent.json")
    with pytest.raises(DatasetError, match="is a directory"):
        load_cases(tmp_path)


def test_bad_n_and_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cases.jsonl", [{"prompt": "a?", "target": "b"}])
    with pytest.raises(DatasetError, match="n must be at least 1"):
        load_cases(path, n=0)
    with pytest.raises(DatasetError, match="unknown data format"):
        load_cases(path, "squad")  # type: ignore[arg-type]


def test_only_the_kept_records_are_checked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cases.jsonl", [{"prompt": "a?", "target": "b"}, {"prompt": "broken"}])
    assert len(load_cases(path, n=1)) == 1


def test_benchmark_text_loses_the_characters_recall_refuses(shared_data: Path) -> None:
    """ZsRE's eval split holds BOMs and zero-width spaces in 5 locality probes (records 55, 278, 417,
    610, 830): asked as they are, recall would refuse them (issue #33.3), and the eval would stop."""
    cases = load_cases(shared_data / "zsre" / "zsre_mend_eval_portability_gpt4.json")
    texts = [
        t for c in cases for t in (c.prompt, c.target, *c.rephrases, *(x for p in c.locality for x in p))
    ]
    assert not any(mark in t for t in texts for mark in ("\ufeff", "\u200b", "\u200e"))
    assert "6°14′45″N 71°50′38″E / 36.24583°N" in cases[55].locality[0][1]


def test_jsonl_text_is_cleaned_of_controls_and_format_characters(tmp_path: Path) -> None:
    path = tmp_path / "edits.jsonl"
    record = {"prompt": "who is the\u200b ceo\u202e of acme ?", "target": "jane\r doe\ufeff"}
    path.write_text(json.dumps(record) + "\n")
    [case] = load_cases(path)
    assert (case.prompt, case.target) == ("who is the ceo of acme ?", "jane doe")
