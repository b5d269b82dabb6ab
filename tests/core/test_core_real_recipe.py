"""The shipped RECIPE knowledge model (--backend recipe) on the real SmolLM2 and MiniLM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memory_store import LearnedSentinel
from recall.artifacts import artifact_info, resolve_artifact
from recall.components import shared_lm
from recall.config import load_config
from recall.knowledge_files import CONFIG_FILE
from recall.memory import EditMemory
from recall.models import LanguageModel

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
    assert info["validation"][-1]["rel_hit"] > 0.9


def test_recipe_answers_with_the_edit_and_leaves_the_rest_alone(memory: EditMemory) -> None:
    assert isinstance(memory.sentinel, LearnedSentinel)
    base_unrelated = memory.ask(UNRELATED).text
    edit = memory.add(QUESTION, NEW_ANSWER).record
    for query in (QUESTION, PARAPHRASE):
        retrieval = memory.retrieve(query)
        assert [h.record.edit_id for h in retrieval.admitted] == [edit.edit_id], retrieval
    assert memory.score(QUESTION, NEW_ANSWER).accuracy == 1.0
    assert memory.ask(QUESTION).text.startswith(NEW_ANSWER)
    unrelated = memory.ask(UNRELATED)
    assert not unrelated.used_memory  # the learned sentinel rejects the Zorblax edit here
    assert unrelated.text == base_unrelated
