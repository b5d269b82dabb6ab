"""run_protocol against FakeMemory: call order per protocol, and every summary number worked out by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from eval_fakes import DriftingMemory, FakeMemory, ReviewingMemory, WrongMemory
from eval_samples import BASE_ANSWERS, SIMPLE_CASES, TRICKY_CASES

from recall.datasets.cases import EvalCase
from recall.errors import ConfigError, RecallError
from recall.eval.protocols import EvalResult, run_protocol
from recall.eval.settings import EvalSettings
from recall.eval.summary import SUMMARY_KEYS
from recall.results import TargetScore

TOL = 1e-9


def evaluate(memory: FakeMemory, cases: Sequence[EvalCase], **kwargs: object) -> EvalResult:
    return run_protocol(memory, cases, EvalSettings(**kwargs), progress=False)  # type: ignore[arg-type]


def test_perfect_memory_scores_everything_full() -> None:
    summary = evaluate(FakeMemory(BASE_ANSWERS), SIMPLE_CASES).summary
    for key in ("Rel", "Gen", "Loc", "Port", "ES", "PS", "NS", "S", "gen_em", "gen_contains"):
        assert summary[key] == pytest.approx(100.0), key
    for key in ("retrieval_top1_prompt", "retrieval_top1_rephrase"):
        assert summary[key] == pytest.approx(100.0), key
    for key in ("gate_false_reject_prompt", "gate_false_reject_rephrase", "gate_closed_rephrase"):
        assert summary[key] == pytest.approx(0.0), key
    assert summary["gate_false_accept_loc"] == pytest.approx(0.0)
    assert summary["n"] == 3
    assert summary["n_noop"] == 0


def test_wrong_memory_scores_zero() -> None:
    summary = evaluate(WrongMemory(BASE_ANSWERS), SIMPLE_CASES).summary
    for key in ("Rel", "Gen", "Loc", "Port", "ES", "PS", "NS", "S", "gen_em", "gen_contains"):
        assert summary[key] == pytest.approx(0.0), key
    assert summary["retrieval_top1_prompt"] == pytest.approx(0.0)
    assert summary["retrieval_top1_rephrase"] == pytest.approx(0.0)
    assert summary["retrieval_topk_rephrase"] == pytest.approx(0.0)
    assert summary["gate_false_reject_prompt"] == pytest.approx(100.0)
    assert summary["gate_false_reject_rephrase"] == pytest.approx(100.0)
    assert summary["gate_closed_rephrase"] == pytest.approx(0.0)  # the gate is open; retrieval is wrong
    assert summary["gate_false_accept_loc"] == pytest.approx(100.0)


def test_sequential_rates_match_hand_computation() -> None:
    # 5 cases; "d" has a false accept on its locality prompt, "e" a rephrase nothing retrieves.
    summary = evaluate(FakeMemory(BASE_ANSWERS), TRICKY_CASES).summary
    expected = {
        "Rel": 100.0,
        "Gen": 80.0,  # e's rephrase gets the base model, which does not know it
        "Loc": 80.0,  # d's France question flips to Fredville
        "Port": 50.0,  # a's portability is retrieved, d's is not; other cases have none
        "ES": 100.0,
        "PS": 80.0,  # e: P(new) == P(true) is not a success
        "NS": 60.0,  # d: the edit target beats Paris; e: the base model knows neither answer (a tie)
        "S": 3 / (1 / 100 + 1 / 80 + 1 / 60),
        "gen_em": 100.0,
        "gen_em_rephrase": 80.0,
        "gen_contains_rephrase": 80.0,
        "retrieval_top1_prompt": 100.0,
        "retrieval_top1_rephrase": 80.0,  # e's rephrase ties at 0 and "a" comes first
        "retrieval_topk_rephrase": 80.0,  # the fake returns 3 hits of 5 records: a, b, c for e's rephrase
        "gate_false_reject_prompt": 0.0,
        "gate_false_reject_rephrase": 20.0,
        "gate_closed_rephrase": 20.0,  # e's rephrase: nothing admitted at all
        "gate_false_accept_loc": 20.0,
    }
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=TOL), key


def test_review_declines_are_counted() -> None:
    # Word overlap with the own prompt: rephrases a 0.8, b 0.83, c 0.8, d 0.86; d's locality question
    # "What is the capital of France?" 0.71 (the gate's false accept in TRICKY_CASES).
    lenient = evaluate(ReviewingMemory(BASE_ANSWERS, sure=0.75), TRICKY_CASES).summary
    assert lenient["review_declined_loc"] == pytest.approx(20.0)  # d's France question: declined...
    assert lenient["gate_false_accept_loc"] == pytest.approx(0.0)  # ...so nothing is admitted there
    assert lenient["Loc"] == pytest.approx(100.0)
    assert lenient["review_declined_rephrase"] == pytest.approx(0.0)
    strict = evaluate(ReviewingMemory(BASE_ANSWERS, sure=0.81), TRICKY_CASES).summary
    assert strict["review_declined_rephrase"] == pytest.approx(40.0)  # a and c
    assert strict["gate_false_reject_rephrase"] == pytest.approx(60.0)  # a, c, and e (never admitted)
    assert strict["Gen"] == pytest.approx(40.0)
    plain = evaluate(FakeMemory(BASE_ANSWERS), TRICKY_CASES).summary
    assert (plain["review_declined_rephrase"], plain["review_declined_loc"]) == (0.0, 0.0)


def test_rows_name_each_case_and_its_edit() -> None:
    result = evaluate(FakeMemory(BASE_ANSWERS), TRICKY_CASES)
    assert [r.case_id for r in result.rows] == ["a", "b", "c", "d", "e"]
    assert len({r.edit_id for r in result.rows}) == 5
    by_id = {r.case_id: r for r in result.rows}
    assert by_id["d"].loc_false_accept == 1.0
    assert by_id["d"].loc == 0.0
    assert by_id["e"].admitted_rephrase == 0.0
    assert by_id["b"].port is None  # no portability pairs: not measured, not 0
    assert by_id["a"].generation_prompt is not None
    assert by_id["a"].generation_prompt.startswith(" Jane Doe.")


def test_summary_keys_are_documented_in_order() -> None:
    summary = evaluate(FakeMemory(BASE_ANSWERS), SIMPLE_CASES).summary
    assert list(summary) == list(SUMMARY_KEYS)


def test_sequential_makes_every_edit_before_testing() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    evaluate(memory, TRICKY_CASES)
    names = [c[0] for c in memory.calls]
    adds = [i for i, c in enumerate(memory.calls) if c[0] == "add"]
    tests = [
        i
        for i, c in enumerate(memory.calls)
        if c[0] in ("retrieve", "ask") or c[:1] + c[2:] == ("score_many", True)
    ]
    assert len(adds) == 5
    assert max(adds) < min(tests)
    assert all(c[2] == "keep_both" for c in memory.calls if c[0] == "add")
    assert set(memory.size_at_test) == {5}
    assert names[0] == "reset"
    assert names[-1] == "reset"
    assert names.count("reset") == 2


def test_base_locality_is_scored_before_any_edit() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    evaluate(memory, TRICKY_CASES)
    first_add = next(i for i, c in enumerate(memory.calls) if c[0] == "add")
    base_calls = [i for i, c in enumerate(memory.calls) if c[0] == "score_many" and c[2] is False]
    assert base_calls
    assert max(base_calls) < first_add
    assert sum(memory.calls[i][1] for i in base_calls) == 5  # one locality pair per case


def test_locality_compares_with_predictions_taken_before_editing() -> None:
    # The base model drifts once edits exist; pre-edit predictions are the only reference that sees it.
    summary = evaluate(DriftingMemory(BASE_ANSWERS), SIMPLE_CASES).summary
    assert summary["Loc"] == pytest.approx(0.0)


def test_single_resets_between_cases() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    summary = evaluate(memory, TRICKY_CASES, protocol="single").summary
    names = [c[0] for c in memory.calls]
    assert names.count("add") == 5
    assert names.count("reset") == 1 + 5
    assert set(memory.size_at_test) == {1}  # every case is tested alone
    # Alone in the store, e's record is the top hit even for its unrelated rephrase, but still not admitted.
    assert summary["retrieval_top1_rephrase"] == pytest.approx(100.0)
    assert summary["gate_false_reject_rephrase"] == pytest.approx(20.0)
    assert summary["gate_false_accept_loc"] == pytest.approx(20.0)


def test_batch_adds_chunks_and_resets_after_each() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    evaluate(memory, TRICKY_CASES, protocol="batch", batch_size=2)
    assert [c[1] for c in memory.calls if c[0] == "add_many"] == [2, 2, 1]
    assert all(c[2] == "keep_both" for c in memory.calls if c[0] == "add_many")
    assert [c[0] for c in memory.calls].count("reset") == 1 + 3
    assert sorted(set(memory.size_at_test)) == [1, 2]


def test_sequential_with_batches_accumulates() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    evaluate(memory, TRICKY_CASES, protocol="sequential", batch_size=2)
    assert [c[1] for c in memory.calls if c[0] == "add_many"] == [2, 2, 1]
    assert set(memory.size_at_test) == {5}


def test_latency_is_recorded_per_edit() -> None:
    result = evaluate(FakeMemory(BASE_ANSWERS), TRICKY_CASES, protocol="batch", batch_size=2)
    assert all(r.edit_latency_ms >= 0 for r in result.rows)
    assert result.rows[0].edit_latency_ms == result.rows[1].edit_latency_ms  # a batch's time, split evenly
    assert result.summary["edit_latency_p50_ms"] is not None
    assert set(result.timings_s) == {"base", "edit", "test", "total"}


def test_without_generation_nothing_is_generated() -> None:
    memory = FakeMemory(BASE_ANSWERS)
    result = evaluate(memory, SIMPLE_CASES, generation=False, compare_probabilities=False)
    assert not [c for c in memory.calls if c[0] == "ask"]
    for key in ("gen_em", "gen_contains", "fluency", "ES", "PS", "NS", "S", "ask_latency_mean_ms"):
        assert result.summary[key] is None, key
    assert result.summary["Rel"] == pytest.approx(100.0)


def test_n_takes_the_first_cases_and_noops_are_counted() -> None:
    noop = EvalCase(
        case_id="z",
        prompt="Who wrote Hamlet?",
        target="Shakespeare",
        ground_truth="Shakespeare",
        is_noop=True,
    )
    result = evaluate(FakeMemory(BASE_ANSWERS), [noop, *TRICKY_CASES], n=2)
    assert [r.case_id for r in result.rows] == ["z", "a"]
    assert result.summary["n"] == 2
    assert result.summary["n_noop"] == 1
    assert result.rows[0].es is None  # P(new) vs P(true) means nothing when they are the same answer
    assert result.rows[1].es == 1.0


def test_fluency_is_entropy_of_prompt_generations() -> None:
    summary = evaluate(FakeMemory(BASE_ANSWERS), SIMPLE_CASES).summary
    assert summary["fluency"] is not None
    assert 100.0 < summary["fluency"] < 600.0


class _ShortScores(FakeMemory):
    def score_many(
        self, pairs: Sequence[tuple[str, str]], namespace: str = "default", *, use_memory: bool = True
    ) -> list[TargetScore]:
        return super().score_many(pairs, namespace, use_memory=use_memory)[:-1]


def test_score_many_returning_too_few_scores_is_an_error() -> None:
    with pytest.raises(RecallError, match="score_many returned"):
        evaluate(_ShortScores(BASE_ANSWERS), SIMPLE_CASES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "lifelong"}, "unknown protocol"),
        ({"batch_size": 0}, "at least 1"),
        ({"protocol": "single", "batch_size": 10}, "use protocol 'batch'"),
        ({"n": 0}, "at least 1"),
        ({"max_new_tokens": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EvalSettings(**kwargs)  # type: ignore[arg-type]


def test_no_cases_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no cases"):
        evaluate(FakeMemory(), [])


def test_a_test_sample_makes_every_edit_and_tests_evenly_spaced_cases() -> None:
    from recall.eval.protocols import sample_indices

    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(5, None) == sample_indices(5, 9) == [0, 1, 2, 3, 4]
    assert sample_indices(5, 1) == [0]
    whole = evaluate(FakeMemory(BASE_ANSWERS), TRICKY_CASES)
    memory = FakeMemory(BASE_ANSWERS)
    sampled = evaluate(memory, TRICKY_CASES, test_sample=2)
    assert sum(1 for c in memory.calls if c[0] == "add") == 5
    assert set(memory.size_at_test) == {5}
    assert [r.case_id for r in sampled.rows] == [TRICKY_CASES[0].case_id, TRICKY_CASES[4].case_id]
    by_id = {r.case_id: r for r in whole.rows}
    for row in sampled.rows:  # the same numbers as in the whole run (edit ids and times aside)
        same = by_id[row.case_id]
        assert dataclasses.replace(row, edit_latency_ms=0.0, edit_id="") == dataclasses.replace(
            same, edit_latency_ms=0.0, edit_id=""
        )
    with pytest.raises(ConfigError, match="test_sample"):
        EvalSettings(protocol="batch", batch_size=2, test_sample=2)
