"""Loss pieces shared by the training recipes."""

from __future__ import annotations

import torch


def kl_from_base(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(base || model) per answer token: (N, V) logits each -> (N,). The locality terms of both
    recipes: the base model is the one without prompts, blocks or adapter."""
    base = base_logits.log_softmax(-1)
    return (base.exp() * (base - logits.log_softmax(-1))).sum(-1)
