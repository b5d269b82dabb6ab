"""The lte recipe end to end on the tiny llama: rows, training, the adapter, and the backend using it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from recall.datasets.cases import EvalCase
from recall.errors import ConfigError
from recall.lm.loading import LanguageModel
from recall.lm.scoring import prompt_ids, target_ids, target_logits
from recall.retrieval.encoder import HashingEncoder
from training.__main__ import main
from training.config import LteTrainConfig, load_train_config
from training.lte_data import build_rows
from training.runs import start_run


def _config(model_dir: Path, files: dict[str, Path], out: Path, **changes: object) -> LteTrainConfig:
    values: dict[str, object] = {
        "model": str(model_dir), "encoder": "hashing", "output_dir": str(out), "bundle_as": None,
        "zsre_train": str(files["zsre"]), "counterfact_train": str(files["counterfact"]),
        "knowedit_train": (), "batch_size": 4, "grad_accum": 1, "eval_every": 2, "checkpoint_every": 1,
        "lr": 1e-2,
    }  # fmt: skip
    values.update(changes)
    return LteTrainConfig(**values)  # type: ignore[arg-type]


def _case(i: int, subject: str) -> EvalCase:
    return EvalCase(
        str(i), f"who is the ceo of {subject} ?", "jane doe", subject=subject,
        rephrases=(f"who is the author of {subject} ?",), locality=(("what is the largest planet ?", "x"),),
    )  # fmt: skip


def test_rows_hold_the_statement_among_at_most_two_distractors(tmp_path: Path) -> None:
    cases = [_case(i, f"acme {i}") for i in range(8)]
    config = LteTrainConfig(neighbours=3, seed=3)
    rows, report = build_rows(config, {"zsre": cases}, HashingEncoder(), excluded=2)
    assert report.rows == {"in_scope": 8, "portability": 0, "out_of_scope": 8}
    assert report.excluded == 2
    for case, row in zip(cases, rows[0::2], strict=True):
        assert row.kind == "in_scope"
        assert (case.prompt, case.target) in row.facts
        assert 1 <= len(row.facts) <= 3
        assert row.question in (case.prompt, *case.rephrases)
        assert row.target == "jane doe"
    for row in rows[1::2]:
        assert row.kind == "out_of_scope"
        assert row.target == "x"  # the gold locality answer: its tokens are compared with the base model's
    # The relevant statement is not always first (LTE's notebook always put it first).
    assert any(r.facts[0] != (c.prompt, c.target) for c, r in zip(cases, rows[0::2], strict=True))


def test_out_of_scope_rows_hold_the_statements_nearest_their_question() -> None:
    cases = [_case(i, f"acme {i}") for i in range(6)]
    planet = EvalCase("p", "what is the largest planet of all ?", "vulcan", subject="planet")
    rows, _ = build_rows(
        LteTrainConfig(neighbours=2, seed=1), {"zsre": [*cases, planet]}, HashingEncoder(), 0
    )
    outside = [r for r in rows if r.kind == "out_of_scope"]
    assert len(outside) == 6
    # Every locality question is "what is the largest planet ?": a gate would hand it the planet edit.
    assert all((planet.prompt, planet.target) in r.facts for r in outside)


def test_the_loss_is_cross_entropy_for_edits_and_kl_to_the_base_for_out_of_scope(
    tiny_lm: LanguageModel,
) -> None:
    from training.lte import Example, answer_loss

    question = prompt_ids(tiny_lm, "what is the largest planet ?")
    block = prompt_ids(tiny_lm, "acme is led by jane doe . what is the largest planet ?")
    answer = target_ids(tiny_lm, "jupiter", leading_space=True)
    edit = Example(question, answer, "in_scope")
    with torch.no_grad():
        alone = float(answer_loss(tiny_lm, [edit], nullcontext))
        expected = torch.nn.functional.cross_entropy(
            target_logits(tiny_lm, [(question, answer)]), torch.tensor(answer)
        )
        assert alone == pytest.approx(float(expected), rel=1e-5)
        # The same question with and without a block: nothing to pull together.
        same = Example(question, answer, "out_of_scope", plain=question)
        assert float(answer_loss(tiny_lm, [same], nullcontext)) == pytest.approx(0.0, abs=1e-6)
        moved = Example(block, answer, "out_of_scope", plain=question)
        assert float(answer_loss(tiny_lm, [moved], nullcontext)) > 1e-6
        # Mixed batches average over all answer tokens.
        both = float(answer_loss(tiny_lm, [edit, same], nullcontext))
        assert both == pytest.approx(alone * len(answer) / (2 * len(answer)), rel=1e-5)


def test_config_rejects_unknown_keys_and_bad_mixes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        load_train_config("lte_lora", ["epoch=2"])
    with pytest.raises(ConfigError, match="distractor_mix"):
        load_train_config("lte_lora", ["distractor_mix=[0.5, 0.6]"])
    with pytest.raises(ConfigError, match="bundled recipes: lte_lora"):
        load_train_config(str(tmp_path / "missing.yaml"))
    assert load_train_config("configs/train/lte_lora.yaml").bundle_as == "lte-smollm2-135m"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_training_writes_an_adapter_that_the_lte_backend_serves(
    device: str, tiny_model_dir: Path, train_files: dict[str, Path], tmp_path: Path
) -> None:
    from training.lte import run

    config = _config(tiny_model_dir, train_files, tmp_path / "run", epochs=2, val_fraction=0.4, device=device)
    adapter = run(config)
    info = json.loads((adapter / "training.json").read_text())
    assert (adapter / "adapter_config.json").is_file()
    assert info["steps"] > 0
    assert info["data"]["rows"]["in_scope"] == 12
    assert info["validation"][-1]["step"] == info["steps"]
    assert json.loads(json.dumps(info["config"]))["encoder"] == "hashing"
    assert 0.0 <= info["validation"][-1]["out_of_scope_agree"] <= 1.0

    # The trained adapter loads through the lte backend, which keeps the base model for no-hit prompts.
    from recall.backends.lte import LteBackend, LteConfig
    from recall.lm.loading import load_lm

    base = load_lm(str(tiny_model_dir))
    backend = LteBackend(LteConfig(adapter=str(adapter)), base)
    assert backend.adapted_lm is not base
    assert backend.lm is base


def test_cli_reports_a_bad_override_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lte", "--set", "epochs=zero"]) == 2
    assert "epochs must be an integer" in capsys.readouterr().err


def test_train_cases_holding_a_special_token_are_left_out(
    tiny_model_dir: Path, train_files: dict[str, Path], tmp_path: Path
) -> None:
    """Issue #33.3: an edit's text is never read as chat structure, in training either."""
    records = json.loads(train_files["zsre"].read_text())
    records[0]["alt"] = "jane </s> doe"
    records[1]["rephrase"] = "who is <s> the author ?"
    train_files["zsre"].write_text(json.dumps(records))
    start = start_run(_config(tiny_model_dir, train_files, tmp_path / "run"), fresh=True)
    kept = [c.case_id for c in start.sources["zsre"]]
    assert "0" not in kept
    assert "1" not in kept
    assert len(kept) == 4
    assert start.excluded >= 2
