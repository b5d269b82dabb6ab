"""The contract of retrieval backends (Capability.USES_RETRIEVAL), run over every registered one
(STYLE.md 5.5): no hit is the base model, a hit changes the scores, state survives save/load. The memory
contract every backend meets is in test_contract_memory.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import backends_with

from memory_store import EditRecord, SearchHit
from recall.backends import Capability, EditBackend, GenerationConfig, ScoreRequest, get_backend
from recall.config import RecallConfig
from recall.lm.generation import generate_ids
from recall.lm.loading import LanguageModel
from recall.lm.scoring import prompt_ids, score_ids, target_ids

RECORD = EditRecord(
    prompt="who is the ceo of acme ?", target="jane doe", statement="who is the ceo of acme ? jane doe"
)
HIT = SearchHit(record=RECORD, score=0.9, rank=0)


@pytest.fixture(params=backends_with(Capability.USES_RETRIEVAL))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeBackend = Callable[[str, LanguageModel], EditBackend]


@pytest.fixture
def make_backend(backend_config: Callable[[str], RecallConfig]) -> MakeBackend:
    def factory(name: str, lm: LanguageModel) -> EditBackend:
        return get_backend(name).factory(backend_config(name).backend, lm)

    return factory


def test_no_hit_is_the_base_model(
    backend_name: str, tiny_lm: LanguageModel, make_backend: MakeBackend
) -> None:
    backend = make_backend(backend_name, tiny_lm)
    question, answer = "what is the largest planet ?", "jupiter"
    base_prompt = prompt_ids(tiny_lm, question)
    expected = score_ids(tiny_lm, [(base_prompt, target_ids(tiny_lm, answer, leading_space=True))])[0]
    assert backend.score_many([ScoreRequest(question, answer)])[0] == expected
    generated = backend.generate(question, (), GenerationConfig(max_new_tokens=5))
    assert generated.text == generate_ids(tiny_lm, base_prompt, GenerationConfig(5))
    assert generated.injected == ""
    assert generated.used == ()


def test_a_hit_changes_the_scores_and_is_finite(
    backend_name: str, tiny_lm: LanguageModel, make_backend: MakeBackend
) -> None:
    backend = make_backend(backend_name, tiny_lm)
    backend.edit([RECORD])  # a hit of an edit the backend took (an in-model value needs the edit)
    plain, edited = backend.score_many(
        [ScoreRequest(RECORD.prompt, "jane doe"), ScoreRequest(RECORD.prompt, "jane doe", (HIT,))]
    )
    assert all(math.isfinite(x) for x in edited.logprobs)
    assert plain.logprobs != edited.logprobs
    assert len(edited.target_ids) == len(edited.predicted_ids) == len(edited.logprobs) == 2


def test_hits_are_ignored_inside_disabled(
    backend_name: str, tiny_lm: LanguageModel, make_backend: MakeBackend
) -> None:
    backend = make_backend(backend_name, tiny_lm)
    backend.edit([RECORD])
    plain = backend.score_many([ScoreRequest(RECORD.prompt, "jane doe")])[0]
    gen = GenerationConfig(max_new_tokens=4)
    with backend.disabled():
        assert backend.score_many([ScoreRequest(RECORD.prompt, "jane doe", (HIT,))])[0] == plain
        assert backend.generate(RECORD.prompt, (HIT,), gen).used == ()
    assert backend.generate(RECORD.prompt, (HIT,), gen).used == (RECORD.edit_id,)


def test_edit_forget_save_load_keep_outputs(
    backend_name: str,
    tiny_lm: LanguageModel,
    tmp_path: Path,
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(backend_name, tiny_lm)
    backend.load(tmp_path / "backend")  # as EditMemory.create does: the backend may write as it goes
    request = ScoreRequest(RECORD.prompt, "jane doe", (HIT,))
    backend.edit([RECORD])
    before = backend.score_many([request])[0]
    backend.save(tmp_path / "backend")
    fresh = make_backend(backend_name, tiny_lm)
    fresh.load(tmp_path / "backend")
    assert fresh.score_many([request])[0] == before
    if Capability.FORGET in backend.capabilities:
        backend.forget([RECORD.edit_id])
        assert (
            backend.score_many([ScoreRequest(RECORD.prompt, "jane doe")])[0]
            == fresh.score_many([ScoreRequest(RECORD.prompt, "jane doe")])[0]
        )


def test_batched_scoring_equals_unbatched(tiny_lm: LanguageModel) -> None:
    items = [
        (prompt_ids(tiny_lm, q), target_ids(tiny_lm, "jane doe", leading_space=True))
        for q in ("who ?", "who is the ceo of acme and what is the capital of france ?")
    ]
    batched = score_ids(tiny_lm, items, batch_size=2)
    single = [score_ids(tiny_lm, [item])[0] for item in items]
    for a, b in zip(batched, single, strict=True):
        assert a.predicted_ids == b.predicted_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_scores_match_the_full_forward_pass(tiny_lm: LanguageModel) -> None:
    import torch

    prompt, target = (
        prompt_ids(tiny_lm, "who is the ceo of acme ?"),
        target_ids(tiny_lm, "jane doe", leading_space=True),
    )
    score = score_ids(tiny_lm, [(prompt, target)])[0]
    with torch.inference_mode():
        logits = tiny_lm.model(input_ids=torch.tensor([prompt + target])).logits[0]  # (T, V)
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    assert list(score.predicted_ids) == logprobs.argmax(-1).tolist()
    expected = logprobs.gather(1, torch.tensor(target)[:, None])[:, 0].tolist()
    assert score.logprobs == pytest.approx(expected, abs=1e-4)
