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
from recall.lm.special import find_special
from training.config import TrainDataConfig
from training.errors import TrainingError
from training.loop import CHECKPOINT
from training.lte_data import load_train_cases


@dataclass
class RunStart:
    run_dir: Path
    lm: LanguageModel
    sources: dict[str, list[EvalCase]]
    excluded: int  # train cases left out: no-ops, a prompt found in an evaluation split, a special token


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
    # A text holding one of the model's special tokens would be read as chat structure, not as words
    # (recall refuses such edits and questions: recall/lm/special.py); train on none of them either.
    kept = {name: [c for c in cases if not _holds_special(lm, c)] for name, cases in sources.items()}
    excluded += sum(map(len, sources.values())) - sum(map(len, kept.values()))
    sources = kept
    if not any(sources.values()):
        raise TrainingError("no usable train cases: check the data paths in the config")
    return RunStart(run_dir, lm, sources, excluded)


def _holds_special(lm: LanguageModel, case: EvalCase) -> bool:
    texts = [case.prompt, case.target, case.subject or "", case.ground_truth or "", *case.rephrases]
    texts += [text for pair in (*case.locality, *case.portability) for text in pair]
    return any(find_special(lm, text) is not None for text in texts)


def bundle(artifact: Path, name: str | None) -> None:
    """Copy `artifact` to recall/adapters/<name> (replacing an older copy); nothing without a name."""
    if not name:
        return
    target = BUNDLED_DIR / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(artifact, target)
    print(f"bundled as {target}")
