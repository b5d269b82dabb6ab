"""The backend registry. A built-in backend is one line of `_BUILTINS` (name -> "module:Class"); the
class carries its config class, capabilities and tiny-test settings, and is its own factory
(config, lm) -> backend. Other packages call `register_backend(cls)`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from recall.backends.base import (
    BackendConfig,
    Capability,
    EditBackend,
    Generation,
    GenerationConfig,
    ScoreRequest,
)
from recall.errors import ConfigError, UnknownBackendError

if TYPE_CHECKING:
    from recall.lm.loading import LanguageModel

__all__ = [
    "BackendConfig",
    "BackendSpec",
    "Capability",
    "EditBackend",
    "Generation",
    "GenerationConfig",
    "ScoreRequest",
    "get_backend",
    "register_backend",
    "registered_backends",
]

_BUILTINS: dict[str, str] = {
    "alphaedit": "recall.backends.alphaedit:AlphaEditBackend",
    "ft": "recall.backends.ft:FtBackend",
    "grace": "recall.backends.grace:GraceBackend",
    "grace_retrieval": "recall.backends.grace:RetrievalGraceBackend",
    "lte": "recall.backends.lte:LteBackend",
    "memit": "recall.backends.memit:MemitBackend",
    "recipe": "recall.backends.recipe:RecipeBackend",
    "rome": "recall.backends.rome:RomeBackend",
}

# (encoder name, batch size, device) -> the backend's own encoder (a recall.retrieval.encoder.Encoder;
# typed Any here because retrieval sits above backends), or None when the name is not one of its.
EncoderLoader = Callable[[str, int, str], Any]


class BackendSpec:
    """A registered backend: its class (the factory), config class and capabilities."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.name: str = cls.name
        self.config_cls: type[BackendConfig] = cls.config_class
        self.capabilities: Capability = cls.capabilities
        # A backend may bring the encoder the store searches with (RECIPE's knowledge model).
        self.encoder: EncoderLoader | None = getattr(cls, "load_encoder", None)

    def factory(self, config: BackendConfig, lm: LanguageModel) -> EditBackend:
        backend: EditBackend = self.cls(config, lm)
        return backend


_REGISTRY: dict[str, BackendSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def register_backend(cls: type[Any]) -> None:
    """Register a backend class under its lowercase, unique `name` (checked like peft's
    register_peft_method); it must set name, config_class and capabilities."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"backend name {name!r} must be lowercase letters/digits with single underscores")
    for attribute in ("config_class", "capabilities", "tiny_settings"):
        if not hasattr(cls, attribute):
            raise ConfigError(f"backend {name!r} must set the class attribute {attribute!r}")
    if name in _REGISTRY and _REGISTRY[name].cls is not cls:
        raise ConfigError(f"backend {name!r} is already registered")
    _REGISTRY[name] = BackendSpec(cls)


def get_backend(name: str) -> BackendSpec:
    """The spec registered under `name`; UnknownBackendError lists the registered names."""
    if name not in _REGISTRY and name in _BUILTINS:
        module, _, attribute = _BUILTINS[name].partition(":")
        # Imported on first use: `import recall.backends` must not import torch (the CLI's --help).
        register_backend(getattr(importlib.import_module(module), attribute))
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(registered_backends())
        raise UnknownBackendError(f"unknown backend {name!r}; registered backends: {known}") from None


def registered_backends() -> list[str]:
    return sorted({*_BUILTINS, *_REGISTRY})
