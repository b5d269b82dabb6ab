"""The relevance recipe on the tiny llama: its pairs, the logistic fit, and a probe the lte backend loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recall.datasets.cases import EvalCase
from recall.errors import ConfigError
from recall.retrieval.encoder import HashingEncoder
from training.__main__ import main
from training.config import RelevanceTrainConfig, load_train_config
from training.relevance import build_pairs, fit_logistic


def _case(i: int, subject: str) -> EvalCase:
    return EvalCase(
        str(i), f"who is the ceo of {subject} ?", "jane doe", subject=subject,
        rephrases=(f"who is the author of {subject} ?",), locality=(("what is the largest planet ?", "x"),),
        portability=((f"where was the ceo of {subject} born ?", "paris"),),
    )  # fmt: skip


def test_pairs_label_own_questions_used_and_other_edits_unused() -> None:
    cases = [_case(0, "acme"), _case(1, "globex"), _case(2, "initech")]
    pairs = build_pairs(cases, HashingEncoder())
    own = [p for p in pairs if p.case == 0]
    assert {(p.kind, p.used) for p in own} == {
        ("own", True), ("neighbour", False), ("portability", True), ("locality", False)
    }  # fmt: skip
    for pair in own:
        is_own_fact = pair.fact == (cases[0].prompt, cases[0].target)
        assert is_own_fact == (pair.kind in ("own", "portability")) or pair.kind == "locality"
    assert [p.question for p in own if p.kind == "own"] == [cases[0].prompt, cases[0].rephrases[0]]


def test_logistic_fit_separates_separable_states() -> None:
    torch.manual_seed(0)
    states = torch.randn(400, 8) * 3 + 5  # (n, d): offset and scale, which the fit standardises away
    labels = (states[:, 2] > 5).float()
    weight, bias = fit_logistic(states, labels, l2=0.001)
    predicted = (torch.sigmoid(states @ weight + bias) >= 0.5).float()
    assert (predicted == labels).float().mean() > 0.97
    assert weight.abs().argmax() == 2


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_training_writes_a_probe_the_lte_backend_loads(
    device: str, tiny_model_dir: Path, train_files: dict[str, Path], tmp_path: Path
) -> None:
    from training.relevance import run

    config = RelevanceTrainConfig(
        model=str(tiny_model_dir), encoder="hashing", output_dir=str(tmp_path / "run"), bundle_as=None,
        zsre_train=str(train_files["zsre"]), counterfact_train=str(train_files["counterfact"]),
        knowedit_train=(), layer=1, max_cases=12, holdout_fraction=0.5, device=device,
    )  # fmt: skip
    probe_dir = run(config)
    info = json.loads((probe_dir / "training.json").read_text())
    assert info["probe"]["layer"] == 1
    assert info["probe"]["template"] == "dialog"
    assert 0.0 <= info["probe"]["threshold"] <= 1.0
    assert set(info["held_out_accept"]) >= {"own", "neighbour"}
    assert info["pairs"]["fit"] > 0
    assert info["pairs"]["held_out"] > 0

    from recall.backends.lte import LteBackend, LteConfig
    from recall.lm.loading import load_lm

    backend = LteBackend(LteConfig(template="dialog", relevance=str(probe_dir)), load_lm(str(tiny_model_dir)))
    assert backend.probe is not None
    assert backend.probe.threshold == pytest.approx(info["probe"]["threshold"])


def test_config_rejects_bad_probe_settings() -> None:
    with pytest.raises(ConfigError, match="false_reject"):
        load_train_config("lte_relevance", ["false_reject=0.7"], recipe="relevance")
    assert load_train_config(None, recipe="relevance").adapter == "lte-smollm2-135m"
    assert main(["relevance", "--set", "holdout_fraction=1.5"]) == 2
