"""Modules by dotted path and forward hooks as context managers: how backends and probes reach inside
a model. A path like "model.layers.3.mlp.down_proj" is walked attribute by attribute (an integer part
indexes a ModuleList); nothing is eval()'d."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from recall.errors import ArchitectureError, ConfigError
from recall.lm.arch import arch_of, num_layers

# (module, inputs, output) -> a replacement output, or None to keep it
ForwardHook = Callable[[torch.nn.Module, tuple[Any, ...], Any], Any]


def resolve_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at dotted `path`; ArchitectureError names the first part that is missing."""
    module: Any = model
    for depth, part in enumerate(path.split(".")):
        try:
            module = module[int(part)] if part.isdigit() else getattr(module, part)
        except (AttributeError, IndexError, TypeError):
            done = ".".join(path.split(".")[:depth]) or type(model).__name__
            raise ArchitectureError(f"{done} has no {part!r} (resolving {path!r})") from None
    if not isinstance(module, torch.nn.Module):
        raise ArchitectureError(f"{path!r} is a {type(module).__name__}, not a module")
    return module


def layer_path(model: torch.nn.Module, which: str, layer: int) -> str:
    """The path of module `which` ("mlp", "mlp_out", "attn") of decoder layer `layer`."""
    template: str = getattr(arch_of(model), which)
    return template.format(layer=layer)


def edited_module(model: torch.nn.Module, model_id: str, which: str, layer: int) -> tuple[int, str]:
    """(layer index, path) of module `which` of decoder `layer` (negative counts from the end), the
    module an editor changes; ConfigError names the setting when the model has no such layer."""
    layers = num_layers(model)
    if not -layers <= layer < layers:
        raise ConfigError(f"backend.layer={layer} is outside {model_id}'s {layers} layers")
    return layer % layers, layer_path(model, which, layer % layers)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    layers = resolve_module(model, arch_of(model).layers)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ArchitectureError(f"{arch_of(model).layers!r} is not a ModuleList")
    return layers


@contextlib.contextmanager
def forward_hook(module: torch.nn.Module, hook: ForwardHook) -> Iterator[None]:
    """Run `hook` after each forward of `module` while inside; removed on exit, errors included."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def forward_pre_hook(
    module: torch.nn.Module, hook: Callable[[torch.nn.Module, tuple[Any, ...]], Any]
) -> Iterator[None]:
    """Run `hook` before each forward of `module` (it may return replacement inputs) while inside."""
    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class StopForward(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by `stop_after`'s hook: the layers after the module are not run."""


@contextlib.contextmanager
def stop_after(module: torch.nn.Module, outputs: list[torch.Tensor]) -> Iterator[None]:
    """While inside, a forward appends `module`'s output (its first element for a tuple) to `outputs`
    and stops with StopForward, which the caller catches: a probe at layer 20 of 30 costs 2/3 a pass."""

    def stop(_module: torch.nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
        outputs.append(output[0] if isinstance(output, tuple) else output)
        raise StopForward

    with forward_hook(module, stop):
        yield


@contextlib.contextmanager
def skip_layers_below(model: torch.nn.Module, layer: int, output: Any) -> Iterator[None]:
    """While inside, decoder layers 0..layer-1 do not run: each returns `output`, what layer-1 returned
    for the same input ids (captured earlier). Training that changes nothing below `layer` (a value
    swapped in at layer `layer`) then reads only the weights from `layer` up on each step. Their KV
    cache is not extended; the model reads past lengths from its cache before any layer runs."""
    layers = decoder_layers(model)[:layer]

    def replay(*_args: Any, **_kwargs: Any) -> Any:
        return output

    for module in layers:
        module.forward = replay  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for module in layers:
            del module.forward
