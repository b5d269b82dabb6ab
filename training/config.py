"""Training configs as frozen dataclasses: TrainDataConfig (the train splits every recipe reads), then
LteTrainConfig (LoRA alignment), RecipeTrainConfig (RECIPE knowledge model) and RelevanceTrainConfig
(the relevance probe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recall.backends.recipe.model import StatementForm
from recall.config import CONFIG_DIR
from recall.config.loader import build_dataclass, read_yaml, set_dotted, to_plain
from recall.errors import ConfigError
from recall.lm.prompts import TemplateName

TRAIN_CONFIG_DIR = CONFIG_DIR / "train"


@dataclass(frozen=True)
class TrainDataConfig:
    """The model, the train splits and the run directory, shared by every training recipe.

    Data paths are relative to the working directory (the repository root, beside ../shared).
    """

    model: str = "smollm2-135m"
    encoder: str = "all-minilm-l6-v2"
    output_dir: str = "runs/lte-smollm2-135m"
    bundle_as: str | None = None  # also copy the final artifact to recall/adapters/<bundle_as>
    seed: int = 0
    # "cuda", "cuda:N" or "auto" when a GPU is at hand; the shipped runs are sized for, and made on, the CPU
    device: str = "cpu"

    # Data: train splits only; the evaluation splits are checked to be disjoint at build time.
    zsre_train: str = "../shared/data/zsre/zsre_mend_train_1k.json"
    counterfact_train: str = "../shared/data/counterfact/counterfact-train.json"
    knowedit_train: tuple[str, ...] = (
        "../shared/data/knowedit/wiki_counterfact_train_cf.json",
        "../shared/data/knowedit/wiki_recent_train.json",
    )
    # Long answers (issue #32): people of KnowEdit's WikiBio train split, each a ~90-word edit asked with
    # question templates (training/longform_data.py); 0 leaves them out.
    wikibio_train: str = "../shared/data/knowedit/wikibio-train-all.json"
    zsre_records: int = 1000
    counterfact_records: int = 800
    knowedit_records: int = 250  # per KnowEdit file
    wikibio_records: int = 0
    val_fraction: float = 0.05
    # P(0, 1, 2 distractors) beside the relevant edit, as a top-k memory admits them (LTE's mix)
    distractor_mix: tuple[float, ...] = (0.5, 0.25, 0.25)

    def __post_init__(self) -> None:
        if abs(sum(self.distractor_mix) - 1.0) > 1e-6 or any(p < 0 for p in self.distractor_mix):
            raise ConfigError(f"distractor_mix must be probabilities summing to 1, got {self.distractor_mix}")
        for name in ("zsre_records", "counterfact_records", "knowedit_records", "wikibio_records"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LteTrainConfig(TrainDataConfig):
    """LTE alignment (METHODS.md §2.2-2.3), scaled to a 2-core CPU and SmolLM2-135M. `encoder` finds
    distractor statements (LTE used multi-qa-mpnet)."""

    question_rate: float = 0.3  # in-scope rows ask the edit question itself, else its paraphrase
    # How the block is written (recall/lm/prompts.py); the lte backend must use the same template.
    template: TemplateName = "lte"
    neighbours: int = 5  # distractors are drawn from this many nearest statements

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
        super().__post_init__()
        if not 0.0 <= self.question_rate <= 1.0:
            raise ConfigError(f"question_rate must be in [0, 1], got {self.question_rate}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class RecipeTrainConfig(TrainDataConfig):
    """RECIPE's knowledge model (METHODS.md §1.5) for a frozen LLM, sized for a 2-core CPU. `encoder` is
    the base sentence encoder whose top layers train."""

    output_dir: str = "runs/recipe-smollm2-135m"
    counterfact_records: int = 3000

    # Model (recall/backends/recipe/model.py KnowledgeSettings)
    knowledge_dim: int = 512
    prompt_tokens: int = 3
    statement_tokens: int = 48  # the statement's own token embeddings after the L_p vectors (0: none)
    # "text": those tokens read "Q? A"; "dialog": the edit as an earlier chat exchange
    # (recall/backends/recipe/model.py)
    statement_form: StatementForm = "text"
    sentinel_tokens: int = 10
    trainable_layers: int = 2

    # Losses (RECIPE §1.5; all weights 1 there)
    temperature: float = 0.05  # cosine / temperature in the InfoNCE terms (RECIPE: dot / sqrt(R), tau 1)
    contrastive_hinge: float = 1.2  # sentinel terms count rows with p(target) < this x best other p
    edit_hinge: float = 1.2  # an answer token counts while p(label) < this x best other p; 0 = plain NLL
    contrastive_weight: float = 1.0
    rel_weight: float = 1.0
    gen_weight: float = 1.0
    loc_weight: float = 1.0
    # The share of question blocks with distractors whose farthest one becomes a conflicting edit (the
    # paraphrase stating another target; training/recipe.py prompt_blocks). On ZsRE with 1000 edits in
    # memory, 46% of questions also admit another edit of the same subject.
    conflict_rate: float = 0.5
    # After training, the sentinel's margin is set so that at most this share of the held-out edits'
    # locality questions admit one of them (training/recipe_gate.py; 1 = no margin).
    sentinel_false_accept: float = 0.02

    # Optimisation: each step scores `retrieval_batch` edits contrastively (cheap: the encoder) and
    # runs the LLM on the first `edit_batch` of them (the costly part).
    epochs: int = 3
    retrieval_batch: int = 64
    edit_batch: int = 8
    lr: float = 1e-3  # the prompt head MLP_P
    # Start from this knowledge model's weights (a bundled name or an artifact folder) instead of
    # MiniLM's untrained heads: a second stage adds data to a trained model. Its shape (encoder,
    # knowledge_dim, prompt_tokens, sentinel_tokens, trainable_layers, statement_form) must be this one's.
    init_from: str | None = None
    retriever_lr_scale: float = 0.2  # MLP_K, MLP_Q and the sentinel train at lr x this
    encoder_lr_scale: float = 0.05  # the encoder's top layers train at lr x this
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_length: int = 160  # longer prompts are dropped (counted)
    val_edits: int = 100  # held-out edits for validation (capped by val_fraction of the data)
    eval_every: int = 100
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "retrieval_batch", "edit_batch", "knowledge_dim", "prompt_tokens",
                     "sentinel_tokens", "eval_every", "checkpoint_every", "val_edits"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.edit_batch > self.retrieval_batch:
            raise ConfigError(
                f"edit_batch ({self.edit_batch}) must be <= retrieval_batch ({self.retrieval_batch})"
            )
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError(f"temperature and lr must be > 0, got {self.temperature} and {self.lr}")
        for name in ("conflict_rate", "sentinel_false_accept"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.retriever_lr_scale < 0 or self.encoder_lr_scale < 0:
            raise ConfigError(
                f"retriever_lr_scale and encoder_lr_scale must be >= 0 (0 keeps that part as it is), got "
                f"{self.retriever_lr_scale} and {self.encoder_lr_scale}"
            )
        if self.statement_tokens < 0:
            raise ConfigError(f"statement_tokens must be >= 0, got {self.statement_tokens}")
        if self.trainable_layers < 0:
            raise ConfigError(f"trainable_layers must be >= 0, got {self.trainable_layers}")


@dataclass(frozen=True)
class RelevanceTrainConfig(TrainDataConfig):
    """The relevance probe (recall/backends/review.py) for the model that answers with edits: pairs of a
    train question and an edit, labelled used (the edit's own question, a paraphrase, a portability
    question) or unused (the nearest other-subject edit to the question; the edit nearest a locality
    question), fit by L2-regularised logistic regression on one layer's last-token state."""

    adapter: str | None = None  # the LoRA adapter whose merged model is read; None = the frozen model
    template: TemplateName = "dialog"  # must be the backend's: the probe reads prompts rendered with it
    layer: int = 20  # hidden state after this many decoder layers (SmolLM2-135M has 30)
    max_cases: int = 1200  # train cases drawn (shuffled) from the splits: ~5,600 pairs, ~10 min on CPU
    holdout_fraction: float = 0.2  # cases held out to set the threshold and report the numbers
    false_reject: float = 0.01  # the threshold declines this share of held-out used pairs
    l2: float = 0.02  # weight decay on the standardised features (mean loss + l2/2 |w|^2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer < 0 or self.max_cases < 2:
            raise ConfigError(f"layer must be >= 0 and max_cases >= 2, got {self.layer}, {self.max_cases}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.false_reject < 0.5:
            raise ConfigError(f"false_reject must be in [0, 0.5), got {self.false_reject}")
        if self.l2 < 0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")


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


TRAIN_CONFIGS: dict[str, tuple[type[TrainDataConfig], str]] = {
    "lte": (LteTrainConfig, "lte_lora"),
    "recipe": (RecipeTrainConfig, "recipe"),
    "relevance": (RelevanceTrainConfig, "lte_relevance"),
}


def load_train_config(path: str | None, overrides: Sequence[str] = (), recipe: str = "lte") -> Any:
    """The recipe's bundled config (or `path`), then `key=value` overrides; unknown keys are errors."""
    config_cls, default = TRAIN_CONFIGS[recipe]
    data = read_yaml(resolve_config_path(path or default))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. epochs=2")
        set_dotted(data, key.strip(), yaml.safe_load(raw))
    return build_dataclass(config_cls, data, "")
