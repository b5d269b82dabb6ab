"""The memory contract on the embedded SmolLM2 and the shipped presets: an edit is used and credited by
the backend, the base-model switch answers as the untouched model, and forget brings the base answer
back (the fast suites run the same contract on the tiny llama for every registered backend)."""

from __future__ import annotations

import pytest

from recall.build import shared_lm
from recall.config import load_config
from recall.memory import EditMemory

pytestmark = pytest.mark.slow

QUESTION = "Who is the CEO of Zorblax Industries?"
PARAPHRASE = "Who leads Zorblax Industries as chief executive?"
NEW_ANSWER = "Marta Quinlan"
TOKENS = 12


@pytest.mark.parametrize("preset", ["recipe", "lte", "lte_aligned"])
def test_edit_switch_and_forget_on_the_real_model(preset: str) -> None:
    lm = shared_lm("smollm2-135m")
    with EditMemory.temporary(load_config(backend=preset), lm=lm) as memory:
        base = [memory.ask(q, max_new_tokens=TOKENS).text for q in (QUESTION, PARAPHRASE)]
        edit_id = memory.add(QUESTION, NEW_ANSWER).edit_id
        answer = memory.ask(QUESTION, max_new_tokens=TOKENS)
        assert answer.used == (edit_id,)
        assert NEW_ANSWER in answer.text
        switched = [memory.ask(q, max_new_tokens=TOKENS, use_memory=False) for q in (QUESTION, PARAPHRASE)]
        assert [a.text for a in switched] == base
        assert not any(a.used for a in switched)
        memory.forget(edit_id)
        assert [memory.ask(q, max_new_tokens=TOKENS).text for q in (QUESTION, PARAPHRASE)] == base
