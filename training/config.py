"""LteTrainConfig: the whole LoRA alignment run (data recipe, LoRA, optimisation) as one frozen dataclass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recall.config import CONFIG_DIR, build_dataclass, read_yaml, set_dotted, to_plain
from recall.errors import ConfigError

TRAIN_CONFIG_DIR = CONFIG_DIR / "train"


@dataclass(frozen=True)
class LteTrainConfig:
    """LTE alignment (METHODS.md §2.2-2.3), scaled to a 2-core CPU and SmolLM2-135M.

    Data paths are relative to the working directory (the repository root, beside ../shared).
    """

    model: str = "smollm2-135m"
    encoder: str = "all-minilm-l6-v2"  # finds distractor statements (LTE used multi-qa-mpnet)
    output_dir: str = "runs/lte-smollm2-135m"
    bundle_as: str | None = None  # also copy the final adapter to recall/adapters/<bundle_as>
    seed: int = 0

    # Data: train splits only; the evaluation splits are checked to be disjoint at build time.
    zsre_train: str = "../shared/data/zsre/zsre_mend_train_1k.json"
    counterfact_train: str = "../shared/data/counterfact/counterfact-train.json"
    knowedit_train: tuple[str, ...] = (
        "../shared/data/knowedit/wiki_counterfact_train_cf.json",
        "../shared/data/knowedit/wiki_recent_train.json",
    )
    zsre_records: int = 1000
    counterfact_records: int = 800
    knowedit_records: int = 250  # per KnowEdit file
    question_rate: float = 0.3  # in-scope rows ask the edit question itself, else its paraphrase
    distractor_mix: tuple[float, ...] = (0.5, 0.25, 0.25)  # P(0, 1, 2 distractors), LTE's threefold mix
    neighbours: int = 5  # distractors are drawn from this many nearest statements
    base_answer_tokens: int = 16  # out-of-scope targets: the base model's own greedy answer, this long
    val_fraction: float = 0.05

    # LoRA (LTE's FastChat defaults)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    # Optimisation
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 2
    lr: float = 5e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_length: int = 320  # longer rows are dropped (counted), never truncated mid-answer
    eval_every: int = 100  # optimizer steps between validations
    checkpoint_every: int = 25  # optimizer steps between checkpoints

    def __post_init__(self) -> None:
        if abs(sum(self.distractor_mix) - 1.0) > 1e-6 or any(p < 0 for p in self.distractor_mix):
            raise ConfigError(f"distractor_mix must be probabilities summing to 1, got {self.distractor_mix}")
        if not 0.0 <= self.question_rate <= 1.0:
            raise ConfigError(f"question_rate must be in [0, 1], got {self.question_rate}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def resolve_config_path(path: str) -> Path:
    """A file path, or a bundled recipe name / `configs/train/<name>.yaml` from any directory."""
    given = Path(path)
    if given.is_file():
        return given
    bundled = TRAIN_CONFIG_DIR / given.name
    for candidate in (bundled, bundled.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in TRAIN_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"no training config at {path!r}; bundled recipes: {known}")


def load_train_config(path: str | None, overrides: Sequence[str] = ()) -> LteTrainConfig:
    """The bundled recipe (or `path`), then `key=value` overrides; unknown keys are errors."""
    data = read_yaml(resolve_config_path(path or "lte_lora"))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. epochs=2")
        set_dotted(data, key.strip(), yaml.safe_load(raw))
    config: LteTrainConfig = build_dataclass(LteTrainConfig, data, "")
    return config
