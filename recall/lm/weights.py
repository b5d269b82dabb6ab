"""Weight ownership: a backend that changes weights (or wraps modules) works on a private copy of just
the modules it changes; every other parameter stays the base model's own tensor. Other memories in the
process, and the base-model switch (`EditBackend.disabled`), keep seeing untouched weights."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

from recall.errors import ArchitectureError
from recall.lm.hooks import resolve_module
from recall.lm.loading import LanguageModel


def shared_parameters(model: torch.nn.Module, owned: Iterable[str]) -> list[torch.nn.Parameter]:
    """The parameters outside the `owned` module paths (and their children): a private copy shares them."""
    prefixes = tuple(f"{name}." for name in owned)
    # remove_duplicate=False: a tied weight is listed under each of its names.
    return [
        param
        for name, param in model.named_parameters(remove_duplicate=False)
        if not name.startswith(prefixes)
    ]


def private_copy(lm: LanguageModel, owned: Iterable[str], *, suffix: str = "private") -> LanguageModel:
    """A LanguageModel whose modules at the `owned` paths hold their own copies of their parameters and
    share every other parameter with `lm` (a deepcopy whose memo maps each shared parameter to itself).

    Raises:
        ArchitectureError: a path does not resolve, or an owned parameter is also used outside the owned
            modules (a tied weight): changing the copy would then change the base model too.
    """
    owned = sorted(set(owned))
    for path in owned:
        resolve_module(lm.model, path)
    shared = shared_parameters(lm.model, owned)
    shared_ids = {id(p) for p in shared}
    for path in owned:
        for name, param in resolve_module(lm.model, path).named_parameters(remove_duplicate=False):
            if id(param) in shared_ids:
                raise ArchitectureError(
                    f"{path}.{name} is tied to a parameter outside {path}: a private copy cannot own it"
                )
    memo: dict[int, Any] = {id(p): p for p in shared}
    model = copy.deepcopy(lm.model, memo)
    model.train(False)  # inference mode (dropout off); eval() is untyped in torch
    return LanguageModel(model, lm.tokenizer, lm.model_id, f"{lm.fingerprint}+{suffix}")


def private_bytes(base: LanguageModel, copy_: LanguageModel) -> int:
    """Bytes of parameters the copy holds that the base model does not share (what the copy costs)."""
    base_ids = {id(p) for p in base.model.parameters()}
    return sum(p.numel() * p.element_size() for p in copy_.model.parameters() if id(p) not in base_ids)
