"""`recall bench` end to end on the tiny llama and the hashing encoder: what it writes, not how fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recall.bench import ANSWER_TOKENS, run_bench


def test_bench_writes_json_and_markdown_with_every_timing(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"model.name={tiny_model_dir}", "encoder.name=hashing", "sentinel.min_cosine=0.3"]
    assert run_bench(num_edits=6, num_asks=3, out_dir=tmp_path, overrides=overrides) == 0
    (report,) = tmp_path.glob("bench-*.json")
    result = json.loads(report.read_text())
    assert (result["num_edits"], result["num_asks"], result["answer_tokens"]) == (6, 3, ANSWER_TOKENS)
    for part in ("edit", "ask_with_memory", "ask_without_memory"):
        assert 0 < result[part]["p50_ms"] <= result[part]["p99_ms"], part
    base = result["ask_without_memory"]["p50_ms"]
    assert result["ask_overhead_p50"] == pytest.approx((result["ask_with_memory"]["p50_ms"] - base) / base)
    assert 0.0 <= result["ask_admitted_share"] <= 1.0
    assert result["overrides"] == overrides
    table = report.with_suffix(".md").read_text()
    assert "| edit (add one edit, durable) |" in table
    assert f"ask with memory ({ANSWER_TOKENS} tokens)" in table
    assert "ask overhead at p50" in capsys.readouterr().out
