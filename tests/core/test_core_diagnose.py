"""`recall diagnose superposition`: p(k_i, k_j) = k_iᵀC⁻¹k_j / k_iᵀC⁻¹k_i and its statistics on keys
whose overlaps are known, interference as the relative move of unrelated keys' outputs, and the command
on the tiny llama (table, JSON and PNGs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from recall.cli.main import main
from recall.diagnose.superposition import interference, superposition


def test_p_is_the_whitened_overlap_normalised_by_the_first_key() -> None:
    # C = diag(1, 4): whitening halves the second coordinate's weight twice over
    moment = torch.diag(torch.tensor([1.0, 4.0]))
    keys = torch.tensor([[1.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    stats = superposition(3, keys, moment)
    # k1ᵀC⁻¹k2 = 1; k1ᵀC⁻¹k1 = 1; k2ᵀC⁻¹k2 = 1 + 1 = 2: p(k1, k2) = 1, p(k2, k1) = 1/2
    assert sorted(stats.values) == pytest.approx([0.5, 1.0], rel=1e-5)
    assert stats.mean == pytest.approx(0.75, rel=1e-5)
    assert stats.angle == pytest.approx(45.0, abs=1e-3)  # cos = 1 / sqrt(1 * 2)


def test_orthogonal_whitened_keys_do_not_superpose() -> None:
    keys = torch.eye(6, dtype=torch.float64) * torch.arange(1, 7, dtype=torch.float64)[:, None]
    stats = superposition(0, keys, torch.eye(6))
    assert max(abs(v) for v in stats.values) < 1e-5
    assert stats.angle == pytest.approx(90.0, abs=1e-3)


def test_interference_is_the_relative_move_of_the_outputs() -> None:
    before = torch.eye(3)
    after = before.clone()
    after[0, 0] += 0.5  # moves key e1's output by half its length, e2's not at all
    keys = torch.eye(3, dtype=torch.float64)[:2]
    assert interference(before, after, keys) == pytest.approx(0.25)
    assert interference(before, before, keys) == 0.0


def test_the_command_writes_a_table_json_and_pngs(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECALL_CACHE_DIR", str(tmp_path / "cache"))
    subjects = [
        "acme",
        "zorblax",
        "france",
        "paris",
        "lyon",
        "novel",
        "jupiter",
        "jane",
        "marta",
        "john",
        "smith",
    ]
    records = [
        {
            "subject": s,
            "src": f"who is the ceo of {s} ?",
            "alt": "jane doe",
            "rephrase": f"who is {s} ?",
            "answers": ["john smith"],
            "loc": "what is the capital of france ?",
            "loc_ans": "paris",
        }
        for s in subjects
    ]
    data = tmp_path / "keys.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    args = ["diagnose", "superposition", "--model", str(tiny_model_dir), "--data", str(data)]
    assert main([*args, "--samples", "8", "--length", "8", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| layer | mean | std | excess kurtosis |" in printed
    (report_file,) = out.glob("superposition-*.json")
    report = json.loads(report_file.read_text())
    assert report["keys"] == len(subjects)
    assert [layer["layer"] for layer in report["layers"]] == [0, 1]
    assert all(math.isfinite(layer["kurtosis"]) for layer in report["layers"])
    assert {p.name.rsplit("-", 1)[-1] for p in out.glob("*.png")} == {"hist.png", "depth.png"}
