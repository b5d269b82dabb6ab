"""`recall bench` end to end on the tiny llama and the hashing encoder: what it writes, not how fast."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recall.cli.bench import ANSWER_TOKENS, SAMPLE_CASES, run_bench
from recall.cli.main import BENCH_DESCRIPTION, main
from recall.datasets.loading import SAMPLE, load_cases
from recall.errors import ConfigError


def test_bench_writes_json_and_markdown_with_every_timing(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"model.name={tiny_model_dir}", "encoder.name=hashing", "sentinel.min_cosine=0.3"]
    assert run_bench(num_edits=6, num_asks=3, out_dir=tmp_path, backend="lte", overrides=overrides) == 0
    (report,) = tmp_path.glob("bench-*.json")
    result = json.loads(report.read_text())
    assert (result["num_edits"], result["num_asks"], result["answer_tokens"]) == (6, 3, ANSWER_TOKENS)
    for part in ("edit", "ask_with_memory", "ask_without_memory", "unrelated_with_memory"):
        assert 0 < result[part]["p50_ms"] <= result[part]["p99_ms"], part
    for name in ("ask", "unrelated"):
        base = result[f"{name}_without_memory"]["p50_ms"]
        overhead = (result[f"{name}_with_memory"]["p50_ms"] - base) / base
        assert result[f"{name}_overhead_p50"] == pytest.approx(overhead)
        assert 0.0 <= result[f"{name}_admitted_share"] <= 1.0
    assert result["overrides"] == overrides
    table = report.with_suffix(".md").read_text()
    assert "| edit (add one edit, durable) |" in table
    assert f"ask with memory ({ANSWER_TOKENS} tokens)" in table
    assert "| unrelated question with memory |" in table
    assert re.search(
        r"ask overhead at p50: [+-]\d+\.\d% \([+-]\d+ ms; edits admitted for \d+%\) on rephrases", table
    )
    assert ") on unrelated questions" in capsys.readouterr().out


@pytest.mark.parametrize(("edits", "asks"), [(1, 3), (6, 0), (6, SAMPLE_CASES + 1)])
def test_bench_refuses_counts_it_cannot_time(edits: int, asks: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--edits" if edits < 2 else "--asks"):
        run_bench(num_edits=edits, num_asks=asks, out_dir=tmp_path)
    assert not list(tmp_path.glob("bench-*"))  # refused before any memory or report is made


def test_bench_cli_reports_a_bad_count_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--asks", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"recall bench: --asks must lie in 1..{SAMPLE_CASES} (the bundled sample's rephrases), got 0"
    )


def test_bench_help_names_the_sample_and_answer_length() -> None:
    cases = load_cases(SAMPLE, "zsre")
    assert len(cases) == SAMPLE_CASES
    assert all(c.rephrases and c.locality for c in cases)  # each kind of timed question, for every case
    assert f"the {SAMPLE_CASES} bundled" in BENCH_DESCRIPTION
    assert f"exactly {ANSWER_TOKENS} new tokens" in BENCH_DESCRIPTION


@pytest.mark.parametrize("backend", ["ft", "rome"])
def test_bench_times_a_weight_editors_forgets(
    backend: str, tiny_model_dir: Path, tmp_path: Path, stats_dir: Path
) -> None:
    overrides = [f"model.name={tiny_model_dir}", "encoder.name=hashing", "backend.layer=0", "backend.steps=2"]
    if backend == "rome":  # the sample's subjects reach rome's check (it refuses an edit without one)
        overrides += [f"backend.stats_dir={stats_dir}", "backend.corpus_samples=4", "backend.prefixes=1"]
    assert run_bench(num_edits=4, num_asks=2, out_dir=tmp_path, backend=backend, overrides=overrides) == 0
    (report,) = tmp_path.glob("bench-*.json")
    result = json.loads(report.read_text())
    assert result["forget_newest"]["edits_kept"] == 3
    assert result["forget_oldest"]["edits_kept"] == 2
    assert result["forget_oldest"]["seconds"] > 0
    table = report.with_suffix(".md").read_text()
    assert re.search(r"forget oldest: \d+\.\d\d s \(2 edits recomputed\)", table)
    assert result["ask_admitted_share"] is None  # the edits live in the model: nothing is retrieved
    assert "edits live in the model: no retrieval) on rephrases" in table


def test_bench_fill_grows_the_memory_before_the_asks(tiny_model_dir: Path, tmp_path: Path) -> None:
    overrides = [f"model.name={tiny_model_dir}", "encoder.name=hashing", "sentinel.min_cosine=0.3"]
    assert (
        run_bench(num_edits=4, num_asks=2, out_dir=tmp_path, backend="lte", overrides=overrides, fill=620)
        == 0
    )
    (report,) = tmp_path.glob("bench-*.json")
    result = json.loads(report.read_text())
    assert result["num_edits_in_memory"] == 620
    assert "620 edits in memory" in report.with_suffix(".md").read_text()


def test_bench_fill_refuses_a_weight_editor_before_any_edit(tiny_model_dir: Path, tmp_path: Path) -> None:
    overrides = [f"model.name={tiny_model_dir}", "encoder.name=hashing", "backend.layer=0"]
    with pytest.raises(ConfigError, match="--fill 1000: a weight editor"):
        run_bench(num_edits=4, num_asks=2, out_dir=tmp_path, backend="ft", overrides=overrides, fill=1000)
