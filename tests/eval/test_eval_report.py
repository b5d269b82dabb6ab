"""Report JSON and markdown: round trip, provenance stamp, no NaN, never overwriting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eval_fakes import FakeMemory
from eval_samples import BASE_ANSWERS, TRICKY_CASES

from recall.datasets.loading import EvalDataset
from recall.errors import RecallError
from recall.eval.protocols import EvalResult, run_protocol
from recall.eval.report import build_stamp, format_markdown, load_report, report_dict, write_report
from recall.eval.settings import EvalSettings
from recall.eval.summary import SUMMARY_KEYS


@pytest.fixture
def result() -> EvalResult:
    return run_protocol(FakeMemory(BASE_ANSWERS), TRICKY_CASES, EvalSettings(seed=3), progress=False)


@pytest.fixture
def stamp(tmp_path: Path, result: EvalResult) -> dict[str, object]:
    dataset = EvalDataset(
        path=tmp_path / "cases.jsonl",
        format="jsonl",
        sha256="ab" * 32,
        num_records=9,
        cases=tuple(TRICKY_CASES),
    )
    return build_stamp(
        FakeMemory().info(), dataset, result.settings, ["recall", "eval", "--data", "my file.jsonl"]
    )


def test_stamp_carries_provenance(stamp: dict[str, object]) -> None:
    assert stamp["protocol"] == "sequential"
    assert stamp["n"] == 5
    assert stamp["seed"] == 3
    assert stamp["command_line"] == "recall eval --data 'my file.jsonl'"
    memory = stamp["memory"]
    assert isinstance(memory, dict)
    assert memory["model_fingerprint"] == "0123456789abcdef"
    assert memory["recall_version"] == "0.0.test"
    data = stamp["data"]
    assert isinstance(data, dict)
    assert data["sha256"] == "ab" * 32
    assert data["format"] == "jsonl"
    assert str(stamp["timestamp"]).endswith("Z")


def test_json_round_trip(tmp_path: Path, result: EvalResult, stamp: dict[str, object]) -> None:
    json_path, md_path = write_report(result, tmp_path / "reports", stamp)
    assert json_path.parent == md_path.parent == tmp_path / "reports"
    document = load_report(json_path)
    assert document["summary"] == result.summary
    assert document["stamp"] == json.loads(json.dumps(stamp))
    assert document["summary_keys"] == SUMMARY_KEYS
    assert [row["case_id"] for row in document["rows"]] == ["a", "b", "c", "d", "e"]
    assert document["rows"][3] == dataclasses.asdict(result.rows[3])
    assert md_path.read_text(encoding="utf-8") == format_markdown(result, stamp)


def test_reports_are_never_overwritten(tmp_path: Path, result: EvalResult, stamp: dict[str, object]) -> None:
    first = write_report(result, tmp_path, stamp)
    second = write_report(result, tmp_path, stamp)
    assert first[0] != second[0]
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert first[0].name.startswith("eval-cases-fake-sequential-n5-")


def test_markdown_shows_every_metric(result: EvalResult, stamp: dict[str, object]) -> None:
    markdown = format_markdown(result, stamp)
    assert markdown.startswith("## recall eval: cases.jsonl (jsonl), sequential, batch size 1, n=5")
    assert "| Rel | 100.00 |" in markdown
    assert "| Gen | 80.00 |" in markdown
    assert "| n_noop | 0 |" in markdown
    assert "| Port | 50.00 |" in markdown
    for key in SUMMARY_KEYS:
        assert f"| {key} |" in markdown
    assert "model `fake-model` (0123456789ab)" in markdown
    assert "command: `recall eval --data 'my file.jsonl'`" in markdown


def test_missing_values_print_as_a_dash(stamp: dict[str, object]) -> None:
    result = run_protocol(
        FakeMemory(BASE_ANSWERS), TRICKY_CASES, EvalSettings(generation=False), progress=False
    )
    assert "| gen_em | – |" in format_markdown(result, stamp)


def test_nan_becomes_null(result: EvalResult, stamp: dict[str, object]) -> None:
    broken = dataclasses.replace(result, summary={**result.summary, "Rel": float("nan")})
    document = report_dict(broken, stamp)
    assert document["summary"]["Rel"] is None
    json.dumps(document, allow_nan=False)


def test_load_report_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RecallError, match="not a recall eval report"):
        load_report(path)


def test_unserialisable_config_values_are_written_as_text(
    tmp_path: Path, result: EvalResult, stamp: dict[str, object]
) -> None:
    odd = {**stamp, "memory": {"backend": "fake", "config": {"store_path": tmp_path / "store"}}}
    json_path, _ = write_report(result, tmp_path, odd)
    assert load_report(json_path)["stamp"]["memory"]["config"]["store_path"] == str(tmp_path / "store")


def test_an_adapter_shows_in_the_backend_label_and_file_name(
    tmp_path: Path, result: EvalResult, stamp: dict[str, object]
) -> None:
    memory = {"backend": "lte", "config": {"backend": {"name": "lte", "adapter": "lte-smollm2-135m"}}}
    adapted = {**stamp, "memory": memory}
    assert "backend `lte+lte-smollm2-135m`" in format_markdown(result, adapted)
    json_path, _ = write_report(result, tmp_path, adapted)
    assert "-lte_lte-smollm2-135m-" in json_path.name  # "+" is not kept in file names


def test_an_in_model_backend_shows_no_gate_rates(result: EvalResult, stamp: dict[str, object]) -> None:
    """ROME answers from its edited weights: the store's gate rates describe a retrieval it never uses."""
    memory = dict(stamp["memory"])  # type: ignore[call-overload]
    shown = format_markdown(result, {**stamp, "memory": {**memory, "backend": "recipe"}})
    hidden = format_markdown(result, {**stamp, "memory": {**memory, "backend": "rome"}})
    assert "| gate_false_accept_loc |" in shown
    assert "| retrieval_top1_prompt |" in shown
    assert "| gate_false_accept_loc |" not in hidden
    assert "| retrieval_top1_prompt |" not in hidden
    assert "rome answers from the model it edited" in hidden
    assert "| Rel |" in hidden
