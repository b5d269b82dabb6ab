"""Training GRACE values (METHODS.md §3.1), several edits in one batch: each edit's value (d_out,) takes
the place of the wrapped module's output at its last prompt token, and Adam (or Rprop) moves it until the
model, teacher-forced, predicts every target token (mean cross-entropy below `stop_loss`) or `n_iter`
steps.

Why it is shaped this way (SmolLM2-135M on one CPU thread: a step over a few tokens is bound by reading
weights, not by arithmetic):
- the prompt before its last token, and the layers below the wrapped one, run once (recall/lm/split.py):
  a step runs the last prompt token and the target tokens from the wrapped layer up;
- the vocabulary projection (a third of a step at layer 15 of SmolLM2) runs over candidate tokens only:
  the top `candidates` tokens of each target position at the start, and the targets. A row that meets
  the stop rule over the candidates is checked over the whole vocabulary; if another token wins there,
  it joins the candidates and training goes on. So the rule a returned value meets is the exact one;
  only the gradient on the way ignores tokens far below the top;
- several edits train in one batch (add_many, sync): a row costs less than a step of its own. Rows never
  mix: the loss is a sum of per-row losses and the optimizers are elementwise, so a row's value is what it
  would be trained alone (up to float summation order in batched matmuls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from recall.lm.hooks import forward_hook
from recall.lm.loading import LanguageModel
from recall.lm.scoring import head_logits
from recall.lm.split import SplitPass, StemCache

Init = Literal["cold", "warm"]
# Rprop's step bounds: (1e-3, 50) lets a coordinate's step grow 25x from the preset's first step of 2
RPROP_STEP_SIZES = (1e-3, 50.0)


@dataclass(frozen=True)
class ValueTask:
    """One edit to learn: its prompt and target token ids and the seed of its cold init."""

    prompt: list[int]
    target: list[int]
    seed: int


@dataclass(frozen=True)
class Steps:
    """How values move. init cold: uniform [0, 1) from the task's seed (GRACE's default); warm: the
    module's own output there. optimizer adam (GRACE's) or rprop (per-coordinate steps that grow while
    the gradient's sign holds: fewer steps through the plateaus of multi-token targets); lr is Adam's
    learning rate or Rprop's first step. A value stops once every target token is the argmax and the
    mean cross-entropy is below stop_loss, or after n_iter steps."""

    init: Init
    optimizer: Literal["adam", "rprop"]
    lr: float
    n_iter: int
    stop_loss: float
    candidates: int = 0  # per target position; 0: the whole vocabulary on every step


@dataclass(frozen=True)
class Learned:
    """A trained value: key (d_in,) and value (d_out,) on the CPU, and the steps it took."""

    key: torch.Tensor
    value: torch.Tensor
    steps: int
    converged: bool


def train_values(
    lm: LanguageModel,
    module_path: str,
    layer: int,
    tasks: Sequence[ValueTask],
    steps: Steps,
    stem: StemCache | None = None,
) -> list[Learned]:
    """Keys and trained values of `tasks` (in order), `layer` the decoder layer holding `module_path`.
    The caller keeps its own codebook out of the way (the module must compute its plain output)."""
    device = lm.device
    rows = len(tasks)
    # Each row cut at its last prompt token: [the prompt | the target but its last token] from there on.
    spans = [len(task.target) for task in tasks]
    reads = [(b, j) for b, n in enumerate(spans) for j in range(n)]
    split = SplitPass(
        lm, module_path, layer, [(t.prompt + t.target[:-1], len(t.prompt) - 1) for t in tasks], reads, stem
    )
    label_rows = split.read_rows
    labels = torch.tensor([tok for task in tasks for tok in task.target], device=device)
    with torch.no_grad():
        vocab = Candidates(labels, head_logits(lm, split.first), steps.candidates)
    values = [_start(task, steps.init, split.out[b]).requires_grad_(True) for b, task in enumerate(tasks)]
    optimizer: torch.optim.Optimizer = (
        torch.optim.Rprop(values, lr=steps.lr, step_sizes=RPROP_STEP_SIZES)
        if steps.optimizer == "rprop"
        else torch.optim.Adam(values, lr=steps.lr)
    )

    def place(_m: torch.nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        out = output.clone()
        out[split.at] = torch.stack(values).to(out)
        return out

    done: dict[int, Learned] = {}  # row -> its value when it first met the stop rule
    step = 0
    with split.steps(), forward_hook(split.module, place):
        for step in range(steps.n_iter + 1):
            hidden = split.run()  # (n, d)
            logits = head_logits(lm, hidden, vocab.ids)  # (n, k), or (n, V) without candidates
            targets = vocab.index(labels)
            token_loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            losses = [chunk.mean() for chunk in torch.split(token_loss, spans)]
            met = _meets(logits.detach().argmax(-1) == targets, losses, spans, steps.stop_loss)
            for b in [b for b in range(rows) if met[b] and b not in done]:
                if vocab.ids is not None:  # the exact rule, over the whole vocabulary
                    where = label_rows == b
                    full = head_logits(lm, hidden[where].detach())  # (spans[b], V)
                    loss = torch.nn.functional.cross_entropy(full, labels[where])
                    if not _meets(full.argmax(-1) == labels[where], [loss], [spans[b]], steps.stop_loss)[0]:
                        vocab.add(full)
                        continue
                done[b] = Learned(split.key[b].cpu(), values[b].detach().cpu().clone(), step, True)
            if len(done) == rows or step == steps.n_iter:
                break
            grads = torch.autograd.grad(torch.stack(losses).sum(), values)  # the weights get no .grad
            for value, grad in zip(values, grads, strict=True):
                value.grad = grad
            optimizer.step()
    # The rows that never met the rule: their value after n_iter steps (GRACE's fixed budget).
    for b in range(rows):
        done.setdefault(b, Learned(split.key[b].cpu(), values[b].detach().cpu().clone(), step, False))
    return [done[b] for b in range(rows)]


def _start(task: ValueTask, init: Init, own: torch.Tensor) -> torch.Tensor:
    if init == "warm":
        return own.clone()
    generator = torch.Generator().manual_seed(task.seed)
    return torch.rand(own.shape, generator=generator).to(own)


def _meets(
    correct: torch.Tensor, losses: Sequence[torch.Tensor], spans: Sequence[int], stop_loss: float
) -> list[bool]:
    """Per row (its `spans` tokens of `correct` (n,), its mean loss): every target is the argmax and the
    mean cross-entropy is below stop_loss."""
    rows = torch.split(correct, list(spans))
    return [bool(c.all()) and float(loss.detach()) < stop_loss for c, loss in zip(rows, losses, strict=True)]


class Candidates:
    """The tokens a step projects onto: sorted ids (k,), or None for the whole vocabulary."""

    def __init__(self, labels: torch.Tensor, logits: torch.Tensor, per_position: int) -> None:
        self.per_position = per_position
        self.ids: torch.Tensor | None = None
        if 0 < per_position < logits.shape[-1]:
            self.ids = torch.unique(labels)
            self.add(logits)

    def add(self, logits: torch.Tensor) -> None:
        """Join the top tokens of each row of logits (n, V)."""
        top = logits.topk(self.per_position, dim=-1).indices.flatten()
        known = top if self.ids is None else torch.cat([self.ids, top])
        self.ids = torch.unique(known)  # sorted

    def index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where tokens (n,) sit among the candidates (each is one: the targets always are)."""
        return tokens if self.ids is None else torch.searchsorted(self.ids, tokens)
