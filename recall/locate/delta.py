"""The residual δ that makes the model say a target (ROME's compute_v, MEMIT's compute_z; METHODS.md
§5.1): δ (d,) is added to a module's output at each row's subject token, and Adam moves it to minimise

    mean over rewrite rows of the target's mean NLL
    + kl_factor * KL(p_before || p_now) at the last token of the KL rows ("{subject} is a")
    + weight_decay * ||δ|| / ||h||²      (h: the module's output there before the edit; the norm, as
                                           the reference code has it, not its square)

with ||δ|| clamped to clamp * ||h|| after each step; it stops when the loss is below `stop_loss`.
Everything before the subject token, and every layer below the module's, runs once (recall/lm/split.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from recall.lm.hooks import forward_hook
from recall.lm.loading import LanguageModel
from recall.lm.scoring import head_logits
from recall.lm.split import SplitPass, StemCache


@dataclass(frozen=True)
class DeltaSettings:
    """ROME's v_* settings (METHODS.md §5.1; the presets say which values and why)."""

    lr: float = 0.5
    steps: int = 20
    stop_loss: float = 5e-2
    kl_factor: float = 0.0625
    weight_decay: float = 1e-3
    clamp: float = 4.0


@dataclass(frozen=True)
class Row:
    """One sequence δ is trained on: token ids, the subject token (where δ goes) and, for a rewrite row,
    the target's ids (the last len(target) - 1 of `ids` are the target but its last token)."""

    ids: list[int]
    subject: int
    target: tuple[int, ...] = ()


@dataclass(frozen=True)
class Delta:
    """A trained δ (d_out,), the module's input (d_in,) and output (d_out,) at the subject token of the
    first rewrite row (the bare prompt), the mean input over the rewrite rows (d_in,), the steps taken
    and the final NLL."""

    delta: torch.Tensor
    key: torch.Tensor
    output: torch.Tensor
    mean_key: torch.Tensor
    steps: int
    nll: float


def train_delta(
    lm: LanguageModel,
    module_path: str,
    layer: int,
    rewrite: Sequence[Row],
    kl: Sequence[Row],
    settings: DeltaSettings,
    stem: StemCache | None = None,
) -> Delta:
    """Train δ at `module_path` (in decoder layer `layer`) on the rewrite and KL rows."""
    rows = [*rewrite, *kl]
    spans = [len(r.target) for r in rewrite]
    # A rewrite row reads its last prompt token and each target token but the last; a KL row its last.
    reads = [
        (b, len(r.ids) - len(r.target) - r.subject + j)
        for b, r in enumerate(rewrite)
        for j in range(len(r.target))
    ]
    reads += [(len(rewrite) + b, len(r.ids) - 1 - r.subject) for b, r in enumerate(kl)]
    split = SplitPass(lm, module_path, layer, [(r.ids, r.subject) for r in rows], reads, stem)
    device = lm.device
    labels = torch.tensor([t for r in rewrite for t in r.target], device=device)
    n_target = len(labels)
    with torch.no_grad():
        before = torch.log_softmax(head_logits(lm, split.first[n_target:]), -1)  # (len(kl), V)
    h = split.out[0]  # (d_out,)
    delta = torch.zeros_like(h, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=settings.lr)
    limit = settings.clamp * float(h.norm())

    def place(_m: torch.nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        out = output.clone()
        out[split.at] = out[split.at] + delta.to(out)
        return out

    taken, nll = 0, float("inf")
    with split.steps(), forward_hook(split.module, place):
        for taken in range(settings.steps):  # noqa: B007 (read after the loop: the steps it took)
            logprobs = torch.log_softmax(head_logits(lm, split.run()), -1)  # (n, V)
            token_nll = -logprobs[:n_target].gather(1, labels[:, None])[:, 0]
            nll_t = torch.stack([c.mean() for c in torch.split(token_nll, spans)]).mean()
            loss = nll_t + settings.weight_decay * delta.norm() / h.norm() ** 2
            if kl:
                kl_t = torch.nn.functional.kl_div(
                    logprobs[n_target:], before, log_target=True, reduction="batchmean"
                )
                loss = loss + settings.kl_factor * kl_t
            nll = float(nll_t.detach())
            if float(loss.detach()) < settings.stop_loss:
                break
            (delta.grad,) = torch.autograd.grad(loss, [delta])  # the weights get no .grad
            optimizer.step()
            with torch.no_grad():
                norm = float(delta.norm())
                if norm > limit:
                    delta.mul_(limit / norm)
    return Delta(
        delta.detach().clone(), split.key[0].clone(), h.clone(), split.key[: len(rewrite)].mean(0), taken, nll
    )
