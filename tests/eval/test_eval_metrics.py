"""Metric functions on examples computed by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recall.datasets.cases import normalize_answer
from recall.eval import metrics
from recall.results import TargetScore

TOL = 1e-9


def test_mean_and_percentile() -> None:
    assert metrics.mean([]) is None
    assert metrics.mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert metrics.percentile([float(i) for i in range(101)], 99) == pytest.approx(99.0)
    assert metrics.percentile([5.0], 99) == pytest.approx(5.0)


def test_harmonic_mean() -> None:
    assert metrics.harmonic_mean([100.0, 50.0, 100.0]) == pytest.approx(75.0)
    assert metrics.harmonic_mean([100.0, 0.0, 100.0]) == 0.0
    assert metrics.harmonic_mean([100.0, None, 100.0]) is None


def test_token_accuracy_and_locality_agreement() -> None:
    post = TargetScore(target_ids=(1, 2, 3, 4), predicted_ids=(1, 2, 0, 4))
    pre = TargetScore(target_ids=(1, 2, 3, 4), predicted_ids=(1, 9, 0, 4))
    assert metrics.token_accuracy(post) == pytest.approx(0.75)
    assert metrics.locality_agreement(post, pre) == pytest.approx(0.75)  # positions 0, 2, 3 agree
    assert metrics.locality_agreement(pre, pre) == 1.0


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   cat,  AN owl and the   dog. ", "cat owl and dog"),
        ("Théâtre", "théâtre"),
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "target", "exact", "contains"),
    [
        ("Paris", "Paris", True, True),
        (" paris.", "Paris", True, True),
        ("The Paris", "Paris", True, True),  # articles are dropped
        ("\n\nParis\nIt is in France.", "Paris", True, True),  # leading blank lines, then the first line
        ("Paris, France", "Paris", False, True),  # strict: more than the target
        ("It is Paris.", "Paris", False, True),
        ("Parisian food", "Paris", False, False),  # whole words only
        ("London\nParis", "Paris", False, True),  # only the first line counts for exact match
        ("", "Paris", False, False),
        ("anything", "", False, False),  # an empty target never matches leniently
    ],
)
def test_exact_and_contains_match(prediction: str, target: str, exact: bool, contains: bool) -> None:
    assert metrics.exact_match(prediction, target) is exact
    assert metrics.contains_match(prediction, target) is contains


def test_ngram_entropy_by_hand() -> None:
    # "a b a b": bigrams ab, ba, ab -> H2 = H(2/3, 1/3); trigrams aba, bab -> H3 = 1 bit.
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert metrics.text_ngram_entropy("a b a b") == pytest.approx(h2 / 3 + 2 * 1.0 / 3, abs=TOL)
    # five distinct words: 4 distinct bigrams (2 bits), 3 distinct trigrams (log2 3 bits).
    assert metrics.text_ngram_entropy("one two three four five") == pytest.approx(
        2.0 / 3 + 2 * math.log2(3) / 3, abs=TOL
    )
    # punctuation is its own token: "Hi , there" has 2 bigrams and 1 trigram.
    assert metrics.text_ngram_entropy("Hi, there") == pytest.approx(1.0 / 3, abs=TOL)
    assert metrics.text_ngram_entropy("word") == 0.0
    assert metrics.text_ngram_entropy("") == 0.0


def test_ngram_entropy_averages_texts() -> None:
    assert metrics.ngram_entropy([]) is None
    one = metrics.text_ngram_entropy("one two three four five")
    assert metrics.ngram_entropy(["one two three four five", "word"]) == pytest.approx(one / 2)


def test_repetition_lowers_entropy() -> None:
    fluent = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun"
    looped = "the the the the the the the the the the the the the the the the the"
    assert metrics.text_ngram_entropy(looped) < metrics.text_ngram_entropy(fluent)


def test_efficacy_paraphrase_neighborhood_success() -> None:
    assert metrics.efficacy_success(-1.0, -2.0) == 1.0  # P(new) > P(true)
    assert metrics.efficacy_success(-2.0, -1.0) == 0.0
    assert metrics.efficacy_success(-1.0, -1.0) == 0.0  # a tie is not a success
    assert metrics.efficacy_success(float("nan"), -1.0) is None  # no logprobs from the backend
    assert metrics.paraphrase_success([(-1.0, -2.0), (-3.0, -2.0)]) == pytest.approx(0.5)
    assert metrics.paraphrase_success([]) is None
    # neighbours: (new, true) pairs; success when the true object stays more likely
    assert metrics.neighborhood_success([(-1.0, -2.0)]) == 0.0
    assert metrics.neighborhood_success([(-3.0, -2.0), (-3.0, -2.5), (-1.0, -4.0)]) == pytest.approx(2 / 3)


def test_probability_margin() -> None:
    assert metrics.probability_margin(math.log(0.6), math.log(0.1)) == pytest.approx(0.5)


@given(st.text(max_size=40))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@given(st.text(min_size=1, max_size=30))
def test_a_target_matches_itself(text: str) -> None:
    if normalize_answer(text) and "\n" not in text.strip():
        assert metrics.exact_match(text, text)
        assert metrics.contains_match(text, text)


@given(st.lists(st.text(max_size=30), max_size=5))
def test_entropy_is_non_negative(texts: list[str]) -> None:
    value = metrics.ngram_entropy(texts)
    assert value is None or value >= 0.0
