"""The benchmark's pieces: synthetic data with the promised geometry, recall, the report, a quick run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory_store import bench
from memory_store.index import HNSW_EF_SEARCH


def test_synthetic_keys_are_unit_deterministic_and_chunk_independent() -> None:
    data = bench.Synthetic(seed=3)
    whole = data.keys(0, 2_000)
    assert whole.shape == (2_000, bench.DIM)
    assert whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    # The latent points (what queries are built from) do not depend on how the range is split.
    np.testing.assert_array_equal(data.latent(0, 25_000)[9_990:10_010], data.latent(9_990, 20))
    np.testing.assert_array_equal(bench.Synthetic(seed=3).keys(0, 100), data.keys(0, 100))


def test_synthetic_queries_are_paraphrase_like() -> None:
    data = bench.Synthetic()
    keys = data.keys(0, 20_000)
    queries = data.queries(20_000, 200)
    scores = queries @ keys.T
    top = np.sort(scores, axis=1)[:, ::-1]
    assert 0.7 < float(np.mean(top[:, 0])) < 0.95  # near their source ...
    assert float(np.mean(top[:, 0] - top[:, 1])) > 0.03  # ... clearly nearer than to the runner-up
    random_pairs = keys[:1000] @ keys[1000:2000].T
    assert abs(float(np.mean(random_pairs))) < 0.05  # unrelated keys are near-orthogonal


def test_recall_counts_ties_as_hits() -> None:
    exact = [["a", 0.9], ["b", 0.8], ["c", 0.7]]
    approx = [["a", 0.9], ["x", 0.8], ["y", 0.5]]
    assert bench._recall(exact, approx) == pytest.approx(2 / 3)


def _fake_report(with_million: bool) -> dict[str, object]:
    run = {"ef_search": HNSW_EF_SEARCH, "p50_ms": 0.5, "p99_ms": 2.0, "recall_at_1": 0.995}
    size = {
        "fill_per_s": 9000.0,
        "flat": {
            "open_s": 1.0,
            "rss_mb": 100.0,
            "p50_ms": 3.0,
            "p99_ms": 5.0,
            "recall_at_1": 1.0,
            "ef_search": None,
        },
        "hnsw": {"open_s": 2.0, "rss_mb": 200.0, **run, "sweep": [run]},
        "hnsw_build": {"open_s": 30.0, "cache_write_s": 1.0, "rss_mb": 300.0},
    }
    sizes = {"1000000" if with_million else "1000": size}
    report: dict[str, object] = {
        "add": {"single_per_s": 300.0, "batched_per_s": 20_000.0, "batch_size": 1000},
        "sizes": sizes,
        "machine": {"cpus": 2, "load": "1.0 at start, 1.0 at end"},
        "params": {"data": "synthetic"},
    }
    report["targets"] = bench._targets(report)
    return report


def test_targets_and_markdown() -> None:
    report = _fake_report(with_million=True)
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert all(v.startswith("met") for v in targets.values()), targets
    text = bench.markdown(report)
    assert "| 1,000,000 | hnsw ef=" in text
    assert "recall@1" in text
    small = _fake_report(with_million=False)["targets"]
    assert isinstance(small, dict)
    assert "not measured" in small["1M targets"]


@pytest.mark.slow
def test_quick_run_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--out", str(tmp_path / "reports"), "--workdir", str(tmp_path)]) == 0
    written = sorted(p.suffix for p in (tmp_path / "reports").iterdir())
    assert written == [".json", ".md"]
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert set(report["sizes"]) == {"2000", "5000"}
    for row in report["sizes"].values():
        assert row["flat"]["recall_at_1"] == 1.0  # flat is the exact reference
        assert 0.0 <= row["hnsw"]["recall_at_1"] <= 1.0
        assert row["hnsw"]["open_s"] > 0
    assert report["add"]["batched_per_s"] > report["add"]["single_per_s"]
    assert "| keys | index |" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("memory_store-bench-")] == []
