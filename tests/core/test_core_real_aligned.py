"""The shipped LoRA alignment adapter (lte_aligned) on the real SmolLM2: edits used, others ignored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recall.artifacts import artifact_info
from recall.backends.base import GenerationConfig
from recall.backends.review import resolve_probe
from recall.build import shared_lm
from recall.config import load_config
from recall.lm.loading import LanguageModel
from recall.lm.lora import adapter_info, resolve_adapter
from recall.memory import EditMemory

pytestmark = pytest.mark.slow

QUESTION = "Who is the CEO of Zorblax Industries?"
PARAPHRASE = "Who leads Zorblax Industries as chief executive?"
NEW_ANSWER = "Marta Quinlan"
UNRELATED = "What is the capital of France?"


@pytest.fixture(scope="module")
def memory() -> Iterator[EditMemory]:
    lm: LanguageModel = shared_lm("smollm2-135m")
    with EditMemory.temporary(load_config(backend="lte_aligned"), lm=lm) as mem:
        yield mem


def test_shipped_adapter_records_how_it_was_trained() -> None:
    info = adapter_info(resolve_adapter("lte-smollm2-135m"))
    assert info["command"].startswith("python -m training lte")
    assert info["data"]["excluded"] >= 0
    assert info["validation"][-1]["in_scope_acc"] > 0.9


def test_aligned_model_answers_with_the_edit_and_only_the_edit(memory: EditMemory) -> None:
    base_unrelated = memory.ask(UNRELATED).text
    memory.add(QUESTION, NEW_ANSWER)
    for query in (QUESTION, PARAPHRASE):
        score = memory.score(query, NEW_ANSWER)
        assert score.accuracy == 1.0, score  # the first token too: the frozen model misses it in chat
        answer = memory.ask(query)
        assert answer.text.startswith(NEW_ANSWER), answer
    unrelated = memory.ask(UNRELATED)
    assert not unrelated.used_memory
    assert unrelated.text == base_unrelated  # no admitted edit: the base model, not the adapter


def test_aligned_model_ignores_an_irrelevant_edit_forced_on_it(memory: EditMemory) -> None:
    memory.add(QUESTION, NEW_ANSWER)
    hits = memory.retrieve(QUESTION).admitted  # the Zorblax edit, handed to an unrelated question
    answer = memory.backend.generate(UNRELATED, hits, GenerationConfig(max_new_tokens=16))
    assert "Paris" in answer.text
    assert NEW_ANSWER not in answer.text


def test_shipped_relevance_probe_records_its_held_out_numbers() -> None:
    info = artifact_info(resolve_probe("lte-relevance-smollm2-135m"))
    assert info["command"].startswith("python -m training relevance")
    assert info["held_out_accept"]["own"] >= 0.97
    assert info["held_out_accept"]["locality"] <= 0.1


def test_aligned_model_declines_an_unrelated_edit_the_gate_let_through() -> None:
    lm: LanguageModel = shared_lm("smollm2-135m")
    open_gate = load_config(backend="lte_aligned", overrides=["sentinel.min_cosine=-1"])
    with EditMemory.temporary(open_gate, lm=lm) as memory:
        edit = memory.add(QUESTION, NEW_ANSWER)
        base = memory.ask(UNRELATED, use_memory=False)
        answer = memory.ask(UNRELATED)
        assert [hit.record.edit_id for hit in answer.retrieval.declined] == [edit.edit_id]
        assert (answer.text, answer.injected) == (base.text, "")
        kept = memory.retrieve(PARAPHRASE)
        assert [hit.record.edit_id for hit in kept.admitted] == [edit.edit_id]
