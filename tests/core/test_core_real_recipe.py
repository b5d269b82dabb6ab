"""The shipped RECIPE knowledge model (--backend recipe) on the real SmolLM2 and MiniLM."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from memory_store import LearnedSentinel
from recall.artifacts import artifact_info, resolve_artifact
from recall.backends.recipe.files import CONFIG_FILE
from recall.backends.review import resolve_probe
from recall.build import shared_lm
from recall.config import load_config
from recall.datasets.loading import SAMPLE
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory

pytestmark = pytest.mark.slow

QUESTION = "Who is the CEO of Zorblax Industries?"
PARAPHRASE = "Who is the chief executive of Zorblax Industries?"
NEW_ANSWER = "Marta Quinlan"
UNRELATED = "What is the capital of France?"


@pytest.fixture(scope="module")
def memory() -> Iterator[EditMemory]:
    lm: LanguageModel = shared_lm("smollm2-135m")
    with EditMemory.temporary(load_config(backend="recipe"), lm=lm) as mem:
        yield mem


def test_shipped_model_records_how_it_was_trained() -> None:
    path = resolve_artifact("recipe-smollm2-135m", CONFIG_FILE, "RECIPE knowledge model", "")
    info = artifact_info(path)
    assert info["command"].startswith("python -m training recipe")
    assert (path / "recipe.safetensors").stat().st_size < 25 * 2**20
    final = info["validation"][-1]
    assert final["rel_hit"] > 0.8  # held-out edits: the gate admits the right edit for its question
    assert final["loc_fa"] < 0.1  # and rarely one for an unrelated question, before any margin;
    gate = info["sentinel"]  # the margin calibrated at the end holds that at the configured 2%
    assert gate["margin"] > 0
    assert gate["loc_false_accept"] <= gate["target_false_accept"] == 0.02


def test_recipe_gates_with_the_sentinel_and_injects_only_admitted_prompts(memory: EditMemory) -> None:
    assert isinstance(memory.sentinel, LearnedSentinel)
    base_unrelated = memory.ask(UNRELATED).text
    before = memory.score(QUESTION, NEW_ANSWER)
    edit = memory.add(QUESTION, NEW_ANSWER).record
    for query in (QUESTION, PARAPHRASE):
        retrieval = memory.retrieve(query)
        assert [h.record.edit_id for h in retrieval.admitted] == [edit.edit_id], retrieval
    after = memory.score(QUESTION, NEW_ANSWER)
    assert sum(after.logprobs) > sum(before.logprobs) + 5.0  # the unseen name becomes likely
    for query in (QUESTION, PARAPHRASE):
        answer = memory.ask(query)
        assert NEW_ANSWER in answer.text, answer
        assert answer.injected.endswith(f"{QUESTION} {NEW_ANSWER}")
    unrelated = memory.ask(UNRELATED)
    assert not unrelated.used_memory  # the learned sentinel rejects the Zorblax edit here
    assert unrelated.text == base_unrelated


def test_shipped_relevance_probe_reads_the_plain_model() -> None:
    info = artifact_info(resolve_probe("relevance-smollm2-135m"))
    assert info["command"] == "python -m training relevance --config configs/train/relevance.yaml"
    assert info["config"]["adapter"] is None
    assert info["held_out_accept"]["own"] >= 0.97
    assert info["held_out_accept"]["locality"] <= 0.3


def test_the_frozen_model_declines_an_unrelated_edit_the_gate_let_through() -> None:
    lm: LanguageModel = shared_lm("smollm2-135m")
    # The sentinel opened for everything, and every admitted query reviewed.
    open_gate = load_config(
        backend="recipe", overrides=["sentinel.margin=-2", "retrieval.review_within=null"]
    )
    with EditMemory.temporary(open_gate, lm=lm) as memory:
        edit = memory.add(QUESTION, NEW_ANSWER).record
        base = memory.ask(UNRELATED, use_memory=False)
        answer = memory.ask(UNRELATED)
        assert [hit.record.edit_id for hit in answer.retrieval.declined] == [edit.edit_id]
        assert (answer.text, answer.injected) == (base.text, "")
        kept = memory.ask(PARAPHRASE)
        assert [hit.record.edit_id for hit in kept.retrieval.admitted] == [edit.edit_id]
        assert NEW_ANSWER in kept.text


@pytest.mark.parametrize("backend", ["recipe", "lte_aligned"])
def test_a_corrected_correction_in_other_words_answers_with_the_latest(backend: str) -> None:
    """The user case of #31: one fact corrected twice in different words; the latest stands, and the
    older edit is superseded (or, kept beside, overridden) rather than answered."""
    lm = shared_lm("smollm2-135m")
    with EditMemory.temporary(load_config(backend=backend), lm=lm) as mem:
        first = mem.add("The CEO of Acme is", "Jane Holloway")
        second = mem.add("Who runs Acme?", "Bob Okafor")
        answer = mem.ask("Who is Acme's chief executive?")
        assert "Bob Okafor" in answer.text
        assert first.edit_id not in {h.record.edit_id for h in answer.retrieval.admitted}
        assert [r.edit_id for r in second.superseded] == [first.edit_id] or (
            first.edit_id in {h.record.edit_id for h in answer.retrieval.overridden}
        )
        unrelated = mem.add("Who runs Globex?", "Carla Mendes")  # another subject: another fact
        assert not unrelated.superseded
        assert "Bob Okafor" in mem.ask("Who runs Acme?").text


@pytest.mark.parametrize("backend", ["recipe", "lte_aligned"])
def test_answers_decoded_together_are_the_answers_one_by_one(backend: str) -> None:
    """The eval asks with ask_many (one packed prefill of the shared prompts and prefixes, then greedy
    steps together from a gathered cache): the greedy answers must be those of `ask`, edited and
    unedited questions mixed, lengths differing."""
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))[:6]
    with EditMemory.temporary(load_config(backend=backend), lm=shared_lm("smollm2-135m")) as memory:
        for record in records:
            memory.add(record["src"], record["alt"], policy="keep_both")
        queries = [r["rephrase"] for r in records] + [UNRELATED, "Who wrote Hamlet?"]
        lengths = [8, 16, 12, 8, 24, 8, 16, 10]
        together = memory.ask_many(queries, max_new_tokens=lengths)
        alone = [memory.ask(q, max_new_tokens=n) for q, n in zip(queries, lengths, strict=True)]
    assert [a.text for a in together] == [a.text for a in alone]
    assert [a.used for a in together] == [a.used for a in alone]
    assert sum(bool(a.used) for a in together) >= 5  # most rephrases use their edit


@pytest.mark.parametrize("backend", ["recipe", "lte_aligned"])
def test_scores_and_answers_of_one_pass_are_those_of_the_two_calls(backend: str) -> None:
    """The eval scores and answers in one pass (score_and_ask: the answers decode from the scoring rows'
    cache): the greedy answers must be ask_many's and the scores score_many's, on the real model."""
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))[:6]
    with EditMemory.temporary(load_config(backend=backend), lm=shared_lm("smollm2-135m")) as memory:
        for record in records:
            memory.add(record["src"], record["alt"], policy="keep_both")
        pairs = [(q, r["alt"]) for r in records for q in (r["src"], r["rephrase"])] + [(UNRELATED, "Paris")]
        queries = [r["src"] for r in records[:3]] + [r["rephrase"] for r in records] + [UNRELATED]
        lengths = [8, 16, 12, 8, 24, 8, 16, 10, 12, 8]
        scores, answers = memory.score_and_ask(pairs, queries, max_new_tokens=lengths)
        alone = memory.score_many(pairs)
        asked = memory.ask_many(queries, max_new_tokens=lengths)
    assert [a.text for a in answers] == [a.text for a in asked]
    assert [a.used for a in answers] == [a.used for a in asked]
    assert [s.predicted_ids for s in scores] == [s.predicted_ids for s in alone]
    for together, apart in zip(scores, alone, strict=True):
        assert together.logprobs == pytest.approx(apart.logprobs, abs=1e-3)
    assert sum(bool(a.used) for a in answers) >= 7
