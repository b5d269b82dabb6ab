"""A small, resumable training loop: AdamW, linear warm-up then cosine decay, gradient accumulation.

The batch plan is a pure function of the seed, so a resumed run skips exactly the micro-batches it
already trained on. A checkpoint (trainable weights, optimizer, scheduler, step, log, resolved config)
is written atomically every `checkpoint_every` optimizer steps and when the run is interrupted.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from tqdm import tqdm

Item = TypeVar("Item")
CHECKPOINT = "checkpoint.pt"


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    grad_accum: int
    lr: float
    warmup_ratio: float
    weight_decay: float
    eval_every: int
    checkpoint_every: int
    seed: int

    @classmethod
    def from_config(cls, config: Any, batch_size: int, grad_accum: int) -> LoopSettings:
        """The settings a training config names (epochs, lr, schedule, cadence, seed) with its batch."""
        return cls(
            epochs=config.epochs,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=config.lr,
            warmup_ratio=config.warmup_ratio,
            weight_decay=config.weight_decay,
            eval_every=config.eval_every,
            checkpoint_every=config.checkpoint_every,
            seed=config.seed,
        )


@dataclass
class LoopState:
    step: int = 0  # optimizer steps taken
    seconds: float = 0.0  # training time across resumes
    log: list[dict[str, Any]] = field(default_factory=list)  # validation records


def plan_batches(lengths: Sequence[int], settings: LoopSettings, window: int = 16) -> list[list[int]]:
    """Micro-batches of item indices for every epoch, shuffled by the seed.

    Within each window of `window` batches the items are sorted by length before batching, so a
    batch holds similar lengths and pads little (~20% less compute here); batch order is shuffled.
    """
    size = settings.batch_size
    batches: list[list[int]] = []
    for epoch in range(settings.epochs):
        rng = random.Random(settings.seed * 1000 + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        epoch_batches: list[list[int]] = []
        for start in range(0, len(order), size * window):
            chunk = sorted(order[start : start + size * window], key=lambda i: lengths[i])
            epoch_batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        rng.shuffle(epoch_batches)
        batches.extend(epoch_batches)
    return batches


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor at `step`: linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TrainLoop(Generic[Item]):
    """Optimise `params` on `items` with `loss_fn(batch) -> scalar`; `validate() -> metrics`.

    `lengths[i]` is item i's token count, used only to batch similar lengths together.
    """

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        items: Sequence[Item],
        lengths: Sequence[int],
        loss_fn: Callable[[list[Item]], torch.Tensor],
        validate: Callable[[], dict[str, float]],
        settings: LoopSettings,
        run_dir: Path,
        config: dict[str, Any],
        lr_scales: Sequence[float] | None = None,
    ) -> None:
        """`lr_scales[i]` multiplies the learning rate of `params[i]` (default 1 for all)."""
        self.params = list(params)
        self.items = items
        self.loss_fn = loss_fn
        self.validate = validate
        self.settings = settings
        self.run_dir = run_dir
        self.config = config
        self.batches = plan_batches(lengths, settings)
        self.total_steps = math.ceil(len(self.batches) / settings.grad_accum)
        scales = list(lr_scales) if lr_scales is not None else [1.0] * len(self.params)
        groups = [
            {
                "params": [p for p, s in zip(self.params, scales, strict=True) if s == scale],
                "lr": settings.lr * scale,
            }
            for scale in sorted(set(scales))
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
        warmup = int(settings.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cosine_with_warmup(step, self.total_steps, warmup)
        )
        self.state = LoopState()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def resume(self) -> bool:
        """Load the run's checkpoint when there is one; True when it did."""
        if not self.checkpoint_path.is_file():
            return False
        saved = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        if saved["config"] != self.config:
            changed = sorted(k for k in self.config if saved["config"].get(k) != self.config[k])
            raise ValueError(
                f"{self.checkpoint_path} was written with another config (differs in {', '.join(changed)}); "
                "use the same config to resume, or --fresh to start over"
            )
        for param, value in zip(self.params, saved["params"], strict=True):
            param.data.copy_(value)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = LoopState(saved["step"], saved["seconds"], saved["log"])
        return True

    def save(self) -> None:
        """Write the checkpoint atomically: a crash mid-write leaves the previous one intact."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "params": [p.detach().clone() for p in self.params],
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.state.step,
                "seconds": self.state.seconds,
                "log": self.state.log,
                "config": self.config,
            },
            tmp,
        )
        os.replace(tmp, self.checkpoint_path)

    def run(self) -> LoopState:
        """Train to the end (or from the checkpoint to the end); validation at the end too."""
        accum = self.settings.grad_accum
        start = self.state.step * accum
        bar = tqdm(total=self.total_steps, initial=self.state.step, desc="train", unit="step")
        began = time.perf_counter() - self.state.seconds
        running: list[float] = []
        try:
            for index in range(start, len(self.batches)):
                batch = [self.items[i] for i in self.batches[index]]
                loss = self.loss_fn(batch)
                (loss / accum).backward()  # type: ignore[no-untyped-call]
                running.append(loss.item())
                last = index == len(self.batches) - 1
                if (index + 1) % accum and not last:
                    continue
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.state.step += 1
                self.state.seconds = time.perf_counter() - began
                bar.update(1)
                bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.3f}")
                if self.state.step % self.settings.eval_every == 0 or last:
                    self._validate(sum(running[-50:]) / len(running[-50:]))
                if self.state.step % self.settings.checkpoint_every == 0 or last:
                    self.save()
        except KeyboardInterrupt:
            self.save()
            bar.close()
            raise
        bar.close()
        return self.state

    def _validate(self, train_loss: float) -> None:
        metrics = self.validate()
        record = {"step": self.state.step, "seconds": round(self.state.seconds, 1), "train_loss": train_loss}
        record.update(metrics)
        self.state.log.append(record)
        tqdm.write(json.dumps(record))
