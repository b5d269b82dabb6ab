"""FtConfig + FtBackend (METHODS.md §5.5): fine-tune one MLP output projection per edit, the baseline
rows of every editing paper, as one backend with a mode:

- `mode: last` (FT-L, `objective_optimization: prompt_last`): every target token is read from the one
  distribution at the last prompt token (the reference code's simplification);
- `mode: target` (FT-M): the target teacher-forced after the prompt, a token per position.

Adam on the weight alone, `steps` steps, a step skipped once the loss is below `stop_loss`, with an
optional L∞ bound on the change (`norm_constraint`, 0: none). The delta is dense (d_out x d_in: 3.5 MB
per edit at SmolLM2-135M's layers), written with the edit; the journal (weight_editor.py) replays on
forget. The layers below the edited one run once per edit (recall/lm/split.py); the layers above run
each step over the whole prompt, since the weight changes every token's output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch

from memory_store import EditRecord
from recall.backends.base import BackendConfig
from recall.backends.weight_editor import Change, WeightDelta, WeightEditor
from recall.errors import ConfigError
from recall.lm.hooks import edited_module
from recall.lm.loading import LanguageModel
from recall.lm.scoring import head_logits
from recall.lm.split import SplitPass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FtConfig(BackendConfig):
    """Knobs of FT-L / FT-M (METHODS.md §5.5; the preset says why each value)."""

    name: str = "ft"
    layer: int = 21  # decoder layer whose MLP output projection is tuned; negative counts from the end
    mode: Literal["last", "target"] = "last"
    lr: float = 5e-4
    steps: int = 25
    stop_loss: float = 1e-2
    norm_constraint: float = 0.0  # L∞ bound on the change of each weight entry (0: none)
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.steps < 1 or self.stop_loss < 0 or self.norm_constraint < 0:
            raise ConfigError(
                "backend.lr must be > 0, backend.steps >= 1, backend.stop_loss and backend.norm_constraint "
                f">= 0; got lr={self.lr}, steps={self.steps}, stop_loss={self.stop_loss}, "
                f"norm_constraint={self.norm_constraint}"
            )


class FtBackend(WeightEditor):
    """FT-L / FT-M: each edit fine-tunes one layer's MLP output projection, one after another."""

    name: ClassVar[str] = "ft"
    config_class: ClassVar[type[BackendConfig]] = FtConfig
    tiny_settings: ClassVar[Mapping[str, Any]] = {
        "encoder.name": "hashing",
        "sentinel.min_cosine": 0.5,
        "backend.layer": 1,
        "backend.lr": 0.05,
        "backend.steps": 5,
    }

    def __init__(self, config: FtConfig, lm: LanguageModel) -> None:
        self.config = config
        self.layer, self.path = edited_module(lm.model, lm.model_id, "mlp_out", config.layer)
        settings = json.dumps(asdict(config), sort_keys=True)
        super().__init__(lm, [self.path], use_chat_template=config.use_chat_template, settings=settings)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "mode": f"FT-{'L' if self.config.mode == 'last' else 'M'}"}

    def compute(self, records: Sequence[EditRecord]) -> Change:
        (record,) = records
        config = self.config
        prompt, target = self._item(record.prompt, record.target)
        if config.mode == "last":  # every target token from the last prompt token's distribution
            ids, reads = prompt, [(0, len(prompt) - 1)]
        else:  # teacher-forced
            ids, reads = prompt + target[:-1], [(0, len(prompt) - 1 + j) for j in range(len(target))]
        # Cut at 0: the whole sequence runs each step, from the tuned layer up.
        split = SplitPass(self.lm, self.path, self.layer, [(ids, 0)], reads)
        labels = torch.tensor(target, device=self.lm.device)
        weight = self.weights[self.path]
        before = weight.detach().clone()
        optimizer = torch.optim.Adam([weight], lr=config.lr)
        loss = torch.tensor(float("inf"))
        weight.requires_grad_(True)
        try:
            with split.steps():
                for _ in range(config.steps):
                    logits = head_logits(self.lm, split.run())  # (1, V) for FT-L, (len(target), V) for FT-M
                    loss = torch.nn.functional.cross_entropy(logits.expand(len(target), -1), labels)
                    if float(loss.detach()) < config.stop_loss:
                        break
                    (weight.grad,) = torch.autograd.grad(loss, [weight])  # no other parameter gets a .grad
                    optimizer.step()
                    if config.norm_constraint > 0:
                        with torch.no_grad():
                            bound = config.norm_constraint
                            weight.copy_(torch.clamp(weight, before - bound, before + bound))
        finally:
            weight.grad = None
            with torch.no_grad():
                delta = (weight.detach() - before).cpu()  # stored and written from the CPU
                weight.copy_(before)  # the journal applies the delta (weight_editor.py)
        if float(loss.detach()) > 1.0:
            log.warning(
                "edit %s: FT left the target's loss at %.2f; the edit may not hold",
                record.edit_id[:8],
                float(loss.detach()),
            )
        return Change([WeightDelta(self.path, delta)])
