"""Greedy decoding settings: what a backend's `generate` is given. No torch here, so that the backend
protocol (and every command's parser above it) imports without loading the model's libraries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TextSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """Greedy decoding settings for a backend's `generate`."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0  # > 0 forces a length (benchmarks compare equal-length answers)
    # Called with each new piece of the answer as it is decoded; the pieces join to exactly the text
    # `generate` returns (stripped of leading and trailing whitespace).
    on_text: TextSink | None = None
