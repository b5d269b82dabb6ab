"""The backend registry: one BackendSpec per name; built-in backends register on import."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recall.backends.base import (
    Capability,
    EditBackend,
    Generation,
    GenerationConfig,
    ReviewsHits,
    ScoreRequest,
)
from recall.errors import ConfigError, UnknownBackendError

if TYPE_CHECKING:
    from recall.config import BackendConfig
    from recall.models import LanguageModel

__all__ = [
    "BackendSpec",
    "Capability",
    "EditBackend",
    "Generation",
    "GenerationConfig",
    "ReviewsHits",
    "ScoreRequest",
    "get_backend",
    "register_backend",
    "registered_backends",
]

BackendFactory = Callable[[Any, "LanguageModel"], EditBackend]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: its config class and a factory (config, lm) -> backend."""

    name: str
    config_cls: type[BackendConfig]
    factory: BackendFactory


_REGISTRY: dict[str, BackendSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def register_backend(name: str, config_cls: type[BackendConfig], factory: BackendFactory) -> None:
    """Register a backend under a lowercase, unique name (checked like peft's register_peft_method)."""
    if not _NAME.match(name):
        raise ConfigError(f"backend name {name!r} must be lowercase letters/digits with single underscores")
    if name in _REGISTRY:
        raise ConfigError(f"backend {name!r} is already registered")
    _REGISTRY[name] = BackendSpec(name, config_cls, factory)


def get_backend(name: str) -> BackendSpec:
    """The spec registered under `name`; UnknownBackendError lists the registered names."""
    _register_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownBackendError(f"unknown backend {name!r}; registered backends: {known}") from None


def registered_backends() -> list[str]:
    _register_builtins()
    return sorted(_REGISTRY)


def _register_builtins() -> None:
    # Imported lazily so that `import recall.backends` stays light and cycles cannot form.
    if "lte" not in _REGISTRY:
        from recall.backends import lte

        register_backend("lte", lte.LteConfig, lte.LteBackend.create)
    if "recipe" not in _REGISTRY:
        from recall.backends import recipe

        register_backend("recipe", recipe.RecipeConfig, recipe.RecipeBackend.create)
