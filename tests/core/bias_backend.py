"""A small in-model backend that lives in the tests: each edit trains one bias vector added to the output
of one layer's MLP (in a private copy of that module, recall/lm/weights.py). It exercises the half of the
memory interface that retrieval backends never touch: state inside the model, `disabled()`, `sync` after
a crash, `check` refusals, exact forget, weight ownership. GRACE and ROME arrive onto this contract.

Each bias is trained alone (the others off), so biases are independent and their sum is the same in any
order: forgetting one is exact, and `sync` can rebuild any set of them from the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from memory_store import EditRecord, InvalidEditError, SearchHit
from memory_store.files import atomic_write
from recall.backends.base import (
    BackendConfig,
    BackendSwitch,
    Capability,
    Generation,
    GenerationConfig,
    ScoreRequest,
)
from recall.lm.generation import generate_ids
from recall.lm.hooks import layer_path, resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render
from recall.lm.scoring import prompt_ids, score_ids, target_ids, target_logits
from recall.lm.weights import private_copy
from recall.results import TargetScore

BIAS_FILE = "bias.safetensors"


@dataclass(frozen=True)
class BiasConfig(BackendConfig):
    name: str = "bias"
    layer: int = -1  # the MLP whose output gets the biases (-1: the last layer)
    steps: int = 8
    lr: float = 0.5


class BiasBackend(BackendSwitch):
    """One trained (d,) bias per edit at one MLP output; a subject is required (like ROME's)."""

    name: ClassVar[str] = "bias"
    config_class: ClassVar[type[BackendConfig]] = BiasConfig
    capabilities: ClassVar[Capability] = Capability.FORGET | Capability.BATCH | Capability.EDITS_WEIGHTS
    tiny_settings: ClassVar[Mapping[str, Any]] = {"encoder.name": "hashing", "sentinel.min_cosine": 0.5}

    def __init__(self, config: BiasConfig, lm: LanguageModel) -> None:
        self.config = config
        layers = int(lm.model.config.num_hidden_layers)
        self.path = layer_path(lm.model, "mlp_out", config.layer % layers)
        self.lm = private_copy(lm, [self.path], suffix="bias")  # owns only the hooked module
        self.biases: dict[str, torch.Tensor] = {}  # edit_id -> (d,)
        self._only: str | None = None  # while training one bias, the others are off
        self._hook = resolve_module(self.lm.model, self.path).register_forward_hook(self._add)

    def _add(self, _module: torch.nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> Any:
        if self._disabled:
            return None
        used = [v for k, v in self.biases.items() if self._only is None or k == self._only]
        return output + torch.stack(used).sum(0) if used else None  # (B, T, d) + (d,)

    def check(self, records: Sequence[EditRecord]) -> None:
        for record in records:
            if not record.subject or record.subject not in record.prompt:
                raise InvalidEditError(
                    f"the bias backend needs a subject that occurs in the prompt, got {record.subject!r}"
                )

    def edit(self, records: Sequence[EditRecord]) -> None:
        self.check(records)
        for record in records:
            self.biases[record.edit_id] = self._train(record)

    def forget(self, edit_ids: Sequence[str]) -> None:
        for edit_id in edit_ids:
            self.biases.pop(edit_id, None)

    def sync(self, active: Sequence[EditRecord]) -> None:
        wanted = {r.edit_id for r in active}
        self.biases = {k: v for k, v in self.biases.items() if k in wanted}
        self.edit([r for r in active if r.edit_id not in self.biases])

    def clear(self) -> None:
        self.biases.clear()

    def describe(self) -> dict[str, str]:
        return {"module": self.path}

    def generate(self, prompt: str, hits: Sequence[SearchHit], gen: GenerationConfig) -> Generation:
        ids = prompt_ids(self.lm, render(self.lm, prompt, use_chat_template=False))
        text = generate_ids(self.lm, ids, gen)
        used = () if self._disabled else tuple(self.biases)
        return Generation(text, "", used)

    def score_many(self, requests: Sequence[ScoreRequest]) -> list[TargetScore]:
        return score_ids(self.lm, [self._item(r.prompt, r.target) for r in requests])

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / BIAS_FILE, lambda tmp: save_file(dict(self.biases), str(tmp)))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        if (path / BIAS_FILE).is_file():
            self.biases = dict(load_file(str(path / BIAS_FILE)))

    def _item(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        text = render(self.lm, prompt, use_chat_template=False)
        return prompt_ids(self.lm, text), target_ids(self.lm, target, leading_space=True)

    def _train(self, record: EditRecord) -> torch.Tensor:
        hidden = int(self.lm.model.config.hidden_size)
        bias = torch.zeros(hidden, requires_grad=True)
        optimizer = torch.optim.Adam([bias], lr=self.config.lr)
        item = self._item(record.prompt, record.target)
        labels = torch.tensor(item[1])
        self.biases[record.edit_id] = bias
        previous, self._only = self._only, record.edit_id
        try:
            for _ in range(self.config.steps):
                optimizer.zero_grad()
                logits = target_logits(self.lm, [item])  # (len(target), V)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                # Only the bias gets a gradient: the shared base parameters' .grad stay untouched.
                (bias.grad,) = torch.autograd.grad(loss, [bias])
                optimizer.step()
        finally:
            self._only = previous
        return bias.detach().clone()


class NoForgetBiasBackend(BiasBackend):
    """The same, declared unable to forget one edit (as MEMIT with batches): forget and supersede must
    be refused before anything changes."""

    name: ClassVar[str] = "bias_noforget"
    capabilities: ClassVar[Capability] = Capability.BATCH | Capability.EDITS_WEIGHTS
