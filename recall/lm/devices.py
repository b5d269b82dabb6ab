"""resolve_device(spec): where the model, the encoder and the RECIPE knowledge model run.

A runtime setting (STYLE.md 5.3): given per process (`--device`, `EditMemory.open(..., device=)`), never
stored in a memory, so a memory made on a GPU machine opens on a laptop and the other way round.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from recall.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device` for a command that loads the model (torch is not imported to build --help)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model and the encoder run: auto (the GPU when PyTorch sees one, else the CPU), "
        "cpu, cuda or cuda:N (default: auto)",
    )


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> the current CUDA device when there is one, else cpu; 'cpu'; 'cuda[:N]'.

    Raises:
        ConfigError: an unknown spec, or a CUDA device this process cannot use.
    """
    import torch

    text = str(spec or "auto").strip().lower()
    if text == "auto":
        # With an index, as a loaded model reports its device: one spelling per device for the caches.
        available = torch.cuda.is_available()
        return torch.device("cuda", torch.cuda.current_device()) if available else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise ConfigError(f"device {spec!r} is not one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r}: PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}); use cpu or auto instead"
        )
    index = int(text.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", index)
