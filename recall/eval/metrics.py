"""Pure metric functions: token accuracy and agreement, answer matching, n-gram entropy, ES/PS/NS.

Definitions follow METHODS.md section 6; each function says which one it reproduces. Nothing here calls a
model, so every number can be checked by hand.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from recall.datasets.cases import normalize_answer

if TYPE_CHECKING:
    from recall.results import TargetScore


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean; None for no values, so "not measured" never reads as 0."""
    items = list(values)
    return sum(items) / len(items) if items else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation, numpy's default; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def harmonic_mean(values: Sequence[float | None]) -> float | None:
    """CounterFact's Score S over (ES, PS, NS); None when any is missing, 0 when any is 0."""
    if not values or any(v is None for v in values):
        return None
    present = [v for v in values if v is not None]
    if any(v <= 0 for v in present):
        return 0.0
    return len(present) / sum(1.0 / v for v in present)


def token_accuracy(score: TargetScore) -> float:
    """EasyEdit `test_prediction_acc`: mean over target tokens of 1[argmax == label] (METHODS 6.1)."""
    return score.accuracy


def locality_agreement(post: TargetScore, pre: TargetScore) -> float:
    """EasyEdit locality: share of target positions where the post-edit argmax equals the pre-edit one.

    It measures agreement with the unedited model, not correctness (METHODS 6.2).
    """
    return post.agreement(pre)


# SQuAD v1.1 evaluate.py normalisation.


def first_line(prediction: str) -> str:
    """The answer part of a generation: leading whitespace dropped, then cut at the first newline."""
    return prediction.lstrip().split("\n", 1)[0]


def exact_match(prediction: str, target: str) -> bool:
    """Strict: the normalised first line of the prediction equals the normalised target.

    "Paris." matches "Paris"; "Paris, France" does not (see `contains_match` for the lenient view).
    """
    return normalize_answer(first_line(prediction)) == normalize_answer(target)


def contains_match(prediction: str, target: str) -> bool:
    """Lenient: the normalised target occurs as whole words anywhere in the normalised prediction."""
    needle = normalize_answer(target)
    return bool(needle) and f" {needle} " in f" {normalize_answer(prediction)} "


# nltk is not installed, so this regex stands in for nltk.word_tokenize: runs of word characters, and each
# punctuation mark as its own token. It differs on contractions ("don't" is don/'/t, nltk gives do/n't),
# so fluency is close to, not identical with, ROME/EasyEdit numbers.
_WORD = re.compile(r"\w+|[^\w\s]")


def _entropy_bits(counts: Counter[tuple[str, ...]]) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def text_ngram_entropy(text: str) -> float:
    """ROME `compute_n_gram_entropy`: mean(2/3·H2, 4/3·H3) = H2/3 + 2·H3/3, entropies in bits."""
    tokens = _WORD.findall(text)
    entropies = []
    for n in (2, 3):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        entropies.append(_entropy_bits(grams))
    return (2 / 3 * entropies[0] + 4 / 3 * entropies[1]) / 2


def ngram_entropy(texts: Iterable[str]) -> float | None:
    """Arithmetic mean of `text_ngram_entropy` over texts (METHODS 6.3); tables show it ×100."""
    return mean(text_ngram_entropy(t) for t in texts)


def success_rate(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Share of (preferred, other) mean-logprob pairs where preferred is strictly more likely.

    A mean logprob is minus the length-normalised NLL, so this is NLL(preferred) < NLL(other). Pairs with
    a NaN (a backend that gave no logprobs) are skipped; None when none remain.
    """
    usable = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    return mean(1.0 if a > b else 0.0 for a, b in usable)


def efficacy_success(new: float, true: float) -> float | None:
    """CounterFact ES for one rewrite prompt: 1 when P(target_new) > P(target_true) (METHODS 6.4)."""
    return success_rate([(new, true)])


def paraphrase_success(pairs: Iterable[tuple[float, float]]) -> float | None:
    """CounterFact PS for one record: over its paraphrases, pairs of (logprob new, logprob true)."""
    return success_rate(pairs)


def neighborhood_success(pairs: Iterable[tuple[float, float]]) -> float | None:
    """CounterFact NS for one record: over its neighbours, pairs of (logprob new, logprob true).

    Success is the opposite preference: the unrelated subject should keep its true object.
    """
    return success_rate((true, new) for new, true in pairs)


def probability_margin(new: float, true: float) -> float:
    """CounterFact magnitude (EM/PM): exp(mean logprob new) - exp(mean logprob true)."""
    return math.exp(new) - math.exp(true)
