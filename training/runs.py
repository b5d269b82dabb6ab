"""What every training recipe does around its loop: open the run directory, load the model and the
train cases, and copy the finished artifact into the package."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from recall.artifacts import BUNDLED_DIR
from recall.datasets.cases import EvalCase
from recall.lm.devices import resolve_device
from recall.lm.loading import LanguageModel, load_lm
from training.config import TrainDataConfig
from training.errors import TrainingError
from training.loop import CHECKPOINT
from training.lte_data import load_train_cases


@dataclass
class RunStart:
    run_dir: Path
    lm: LanguageModel
    sources: dict[str, list[EvalCase]]
    excluded: int  # train cases left out: no-ops, or a prompt found in an evaluation split


def start_run(config: TrainDataConfig, *, fresh: bool) -> RunStart:
    """Seed, the run directory (its checkpoint removed with `fresh`), the model on `config.device` and the
    train cases."""
    device = resolve_device(config.device)  # before any loading: a bad device fails at once
    torch.manual_seed(config.seed)
    run_dir = Path(config.output_dir)
    if fresh and run_dir.exists():
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    lm = load_lm(config.model, device=device)
    sources, excluded = load_train_cases(config)
    if not any(sources.values()):
        raise TrainingError("no usable train cases: check the data paths in the config")
    return RunStart(run_dir, lm, sources, excluded)


def bundle(artifact: Path, name: str | None) -> None:
    """Copy `artifact` to recall/adapters/<name> (replacing an older copy); nothing without a name."""
    if not name:
        return
    target = BUNDLED_DIR / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(artifact, target)
    print(f"bundled as {target}")
