"""EvalSettings: how an evaluation runs (protocol, batch size, what it measures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from recall.errors import ConfigError

ProtocolName = Literal["single", "batch", "sequential"]
PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """How to run an evaluation.

    Attributes:
        protocol: "single" (edit, test, reset per case), "batch" (add_many a chunk, test it, reset), or
            "sequential" (add all edits without resetting, then test all: METHODS 6.5 "edit all, then
            test all"; with batch_size > 1 the edits go in cumulative add_many chunks, as AlphaEdit does).
        batch_size: edits per add_many call for batch and sequential; single needs 1.
        n: test only the first n cases given (None: all).
        seed: recorded in the report; the harness draws no random numbers itself (the command uses it
            to shuffle cases when asked).
        generation: also generate answers (exact/contains match, fluency); the slowest part of a run.
        max_new_tokens: passed to memory.ask; None lets the memory choose.
        compare_probabilities: also score the original answer to get CounterFact ES/PS/NS.
        namespace: where the edits go and where every probe looks.
        long_form: also score each generated answer as long text (recall/eval/longform.py: ROUGE-L
            recall and sentence similarity against the target, question and rephrase), with an answer
            budget that follows the target's length (at least max_new_tokens). Needs generation.
        similarity_encoder: the encoder of that similarity (the bundled MiniLM, as UnKEBench uses).
        test_sample: sequential only: every edit is made, then this many cases, evenly spaced over all
            of them, are tested (None: every case). Testing costs ~10x editing on CounterFact, so a
            10,000-edit memory can be measured on 1,000 of its cases.
    """

    protocol: ProtocolName = "sequential"
    batch_size: int = 1
    n: int | None = None
    seed: int = 0
    generation: bool = True
    max_new_tokens: int | None = None
    compare_probabilities: bool = True
    namespace: str = "default"
    long_form: bool = False
    similarity_encoder: str = "all-minilm-l6-v2"
    test_sample: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.protocol == "single" and self.batch_size != 1:
            raise ConfigError(
                f"protocol 'single' edits one case at a time (got batch_size={self.batch_size}); "
                "use protocol 'batch' to test chunks of edits"
            )
        if self.test_sample is not None and (self.test_sample < 1 or self.protocol != "sequential"):
            raise ConfigError(
                f"test_sample ({self.test_sample}) must be at least 1 and needs protocol 'sequential' (the "
                "other protocols reset the memory between chunks, so every case is tested as it is edited)"
            )
        if self.n is not None and self.n < 1:
            raise ConfigError(f"n must be at least 1, got {self.n}")
        if self.long_form and not self.generation:
            raise ConfigError(
                "long-form scoring reads generated answers: it needs generation (drop --no-generation)"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
