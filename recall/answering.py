"""The ask flow after the facade: checked questions, the gate's admitted hits, the answer's length, and
the backend's decoding (one by one, streamed, or several together), on the edited or the base model; and
teacher-forced scoring through the same gate."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

from recall.backends import EditBackend, GenerationConfig, ScoreRequest
from recall.errors import InvalidQueryError
from recall.queries import QueryCheck, check_flag
from recall.results import Answer, TargetScore
from recall.retrieval.gate import Gate


class Answering:
    """Answers and scores for EditMemory: what `ask`, `ask_many` and `score_many` run."""

    def __init__(self, check: QueryCheck, gate: Gate, backend: EditBackend) -> None:
        self.check, self.gate, self.backend = check, gate, backend

    def answer(
        self,
        queries: Sequence[str],
        namespace: str,
        lengths: Sequence[int | None],
        use_memory: bool,
        on_text: Callable[[str], None] | None = None,
    ) -> list[Answer]:
        """One Answer per query, each within its own length (None: the model's default, or what its
        admitted targets need). One query may stream (`on_text`); several are decoded together where
        the backend can, and each Answer's latency is the call's time split evenly over them."""
        _check_lengths("ask_many", queries, lengths)
        if not queries:
            return []
        start = time.perf_counter()
        checked = [self.check.ask(q, namespace, n) for q, n in zip(queries, lengths, strict=True)]
        use = check_flag("use_memory", use_memory)
        found = self.gate.for_backend([q for q, _ in checked], namespace, use)
        gens = [  # a long edit comes back whole: the length follows the admitted targets
            GenerationConfig(self.check.answer_length(q, n, r.admitted), on_text=on_text)
            for (q, n), r in zip(checked, found, strict=True)
        ]
        with self.model(use):
            if len(gens) == 1:
                outs = [self.backend.generate(checked[0][0], found[0].admitted, gens[0])]
            else:
                outs = self.backend.generate_many([q for q, _ in checked], [r.admitted for r in found], gens)
        each = (time.perf_counter() - start) / max(1, len(queries))
        return [
            Answer(o.text, r, self.backend.name, o.injected, each, used=o.used)
            for o, r in zip(outs, found, strict=True)
        ]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str, use_memory: bool
    ) -> list[TargetScore]:
        checked, use = self.check.pairs(pairs, namespace), check_flag("use_memory", use_memory)
        # one retrieval per distinct question: an evaluation scores several targets after one question
        questions = list(dict.fromkeys(q for q, _ in checked))
        found = dict(zip(questions, self.gate.for_backend(questions, namespace, use), strict=True))
        retrievals = [found[q] for q, _ in checked]
        requests = [
            ScoreRequest(q, t.strip(), r.admitted) for (q, t), r in zip(checked, retrievals, strict=True)
        ]
        with self.model(use):
            return self.backend.score_many(requests)

    def score_and_answer(
        self,
        pairs: Sequence[tuple[str, str]],
        queries: Sequence[str],
        namespace: str,
        max_new_tokens: Sequence[int | None] | None,
    ) -> tuple[list[TargetScore], list[Answer]]:
        """`score_many(pairs)` and `answer(queries)` on the edited model, each distinct question
        retrieved once for both, in one backend pass where it can (the questions asked are usually
        among those scored: their answers decode from the scoring rows). Each Answer's latency is the
        pass's time split evenly over the pairs and the questions."""
        lengths = [None] * len(queries) if max_new_tokens is None else max_new_tokens
        _check_lengths("score_and_ask", queries, lengths)
        start = time.perf_counter()
        scored = self.check.pairs(pairs, namespace)
        checked = [self.check.ask(q, namespace, n) for q, n in zip(queries, lengths, strict=True)]
        questions = list(dict.fromkeys([*(q for q, _ in scored), *(q for q, _ in checked)]))
        found = dict(zip(questions, self.gate.for_backend(questions, namespace, True), strict=True))
        requests = [ScoreRequest(q, t.strip(), found[q].admitted) for q, t in scored]
        asked = [found[q] for q, _ in checked]
        gens = [
            GenerationConfig(self.check.answer_length(q, n, r.admitted))
            for (q, n), r in zip(checked, asked, strict=True)
        ]
        prompts = [q for q, _ in checked]
        scores, outs = self.backend.score_and_generate_many(
            requests, prompts, [r.admitted for r in asked], gens
        )
        each = (time.perf_counter() - start) / max(1, len(pairs) + len(queries))
        answers = [
            Answer(o.text, r, self.backend.name, o.injected, each, used=o.used)
            for o, r in zip(outs, asked, strict=True)
        ]
        return scores, answers

    def model(self, use_memory: bool) -> contextlib.AbstractContextManager[None]:
        """Where generate/score run: the edited model, or the untouched base model for any backend."""
        return contextlib.nullcontext() if use_memory else self.backend.disabled()


def _check_lengths(call: str, queries: Sequence[str], lengths: Sequence[int | None]) -> None:
    """A list of questions (not one str) and one answer length per question."""
    if isinstance(queries, str) or len(lengths) != len(queries):
        raise InvalidQueryError(
            f"{call} expected a list of questions and, when given, one max_new_tokens per question "
            f"(received {type(queries).__name__} of {len(queries)} and {len(lengths)} lengths)"
        )
