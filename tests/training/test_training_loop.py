"""TrainLoop: batch plan, schedule, checkpoints, and resuming after an interruption."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from training.loop import LoopSettings, TrainLoop, cosine_with_warmup, plan_batches


def _settings(**changes: object) -> LoopSettings:
    values: dict[str, object] = {
        "epochs": 2, "batch_size": 3, "grad_accum": 2, "lr": 1.0, "warmup_ratio": 0.1,
        "weight_decay": 0.0, "eval_every": 2, "checkpoint_every": 1, "seed": 7,
    }  # fmt: skip
    values.update(changes)
    return LoopSettings(**values)  # type: ignore[arg-type]


def test_plan_batches_covers_every_item_once_per_epoch_and_is_seeded() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11]
    plan = plan_batches(lengths, _settings())
    per_epoch = len(plan) // 2
    for epoch in (plan[:per_epoch], plan[per_epoch:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(len(lengths)))
    assert plan == plan_batches(lengths, _settings())
    assert plan != plan_batches(lengths, _settings(seed=8))


def test_cosine_with_warmup_rises_then_decays_to_zero() -> None:
    factors = [cosine_with_warmup(s, total=20, warmup=4) for s in range(21)]
    assert factors[0] < factors[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert factors[20] == pytest.approx(0.0)


class _Problem:
    """Fit w to y = 3x with squared loss; deterministic, so runs can be compared exactly."""

    def __init__(self, fail_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.items = [float(x) for x in range(1, 12)]
        self.calls = 0
        self.fail_at = fail_at

    def loss(self, batch: list[float]) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        x = torch.tensor(batch)
        return ((self.weight * x - 3 * x) ** 2).mean()

    def loop(self, run_dir: Path, config: dict[str, object] | None = None) -> TrainLoop[float]:
        return TrainLoop(
            [self.weight], self.items, [1] * len(self.items), self.loss,
            lambda: {"w": self.weight.item()}, _settings(), run_dir, config or {"lr": 0.05},
        )  # fmt: skip


def test_loop_learns_and_logs_validation(tmp_path: Path) -> None:
    problem = _Problem()
    state = problem.loop(tmp_path).run()
    assert state.step == problem.loop(tmp_path / "other").total_steps
    assert abs(problem.weight.item() - 3.0) < abs(0.0 - 3.0) / 2  # it moved most of the way to 3
    assert state.log
    assert state.log[-1]["step"] == state.step
    assert (tmp_path / "checkpoint.pt").is_file()


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = _Problem()
    straight.loop(tmp_path / "straight").run()

    interrupted = _Problem(fail_at=5)  # dies in the third optimizer step
    with pytest.raises(KeyboardInterrupt):
        interrupted.loop(tmp_path / "resumed").run()
    resumed = _Problem()
    loop = resumed.loop(tmp_path / "resumed")
    assert loop.resume()
    assert loop.state.step == 2
    loop.run()
    assert resumed.weight.item() == pytest.approx(straight.weight.item(), abs=1e-6)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path: Path) -> None:
    _Problem().loop(tmp_path, {"lr": 0.05}).run()
    with pytest.raises(ValueError, match="another config"):
        _Problem().loop(tmp_path, {"lr": 0.1}).resume()
