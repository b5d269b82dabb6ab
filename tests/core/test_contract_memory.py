"""The memory contract every registered backend meets through EditMemory, retrieval and in-model alike
(the test-only `bias` backends stand in for GRACE and ROME): the base-model switch is the untouched
model, forget equals never having made the edit, a crash between the backend's write and the store's is
repaired on open, a refusal or a failure changes nothing, and weight editors leave other memories alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from bias_backend import BiasBackend
from conftest import backends_with

from memory_store import InvalidEditError
from recall.backends import Capability, get_backend, registered_backends
from recall.config import RecallConfig
from recall.errors import UnsupportedOperationError
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import TargetScore

# Subjects are given (and occur in the prompts): a backend that needs one, as ROME does, takes them.
CEO = ("who is the ceo of acme ?", "jane doe", "acme")
CAPITAL = ("what is the capital of france ?", "lyon", "france")
QUESTIONS = [(CEO[0], CEO[1]), (CAPITAL[0], CAPITAL[1]), ("who wrote the novel ?", "john smith")]

MakeMemory = Callable[..., EditMemory]


@pytest.fixture(params=registered_backends())
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_memory(
    tmp_path: Path, tiny_lm: LanguageModel, backend_config: Callable[[str], RecallConfig]
) -> Iterator[MakeMemory]:
    opened: list[EditMemory] = []

    def factory(name: str, folder: str = "memory", *, reopen: bool = False) -> EditMemory:
        if reopen:
            memory = EditMemory.open(tmp_path / folder, lm=tiny_lm)
        else:
            memory = EditMemory.create(tmp_path / folder, backend_config(name), lm=tiny_lm)
        opened.append(memory)
        return memory

    yield factory
    for memory in opened:
        memory.close()  # idempotent; a "crashed" memory's store is closed already


def outputs(memory: EditMemory, *, use_memory: bool = True) -> tuple[list[TargetScore], list[str]]:
    """Teacher-forced scores and short greedy answers for QUESTIONS."""
    scores = memory.score_many(QUESTIONS, use_memory=use_memory)
    answers = [memory.ask(q, max_new_tokens=4, use_memory=use_memory).text for q, _ in QUESTIONS]
    return scores, answers


def same(a: tuple[list[TargetScore], list[str]], b: tuple[list[TargetScore], list[str]]) -> None:
    assert a[1] == b[1]
    for x, y in zip(a[0], b[0], strict=True):
        assert x.predicted_ids == y.predicted_ids
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_an_edit_is_applied_and_credited(backend_name: str, open_memory: MakeMemory) -> None:
    memory = open_memory(backend_name)
    before = memory.score(CEO[0], CEO[1])
    edit_id = memory.add(*CEO).edit_id
    after = memory.score(CEO[0], CEO[1])
    assert after.logprobs != before.logprobs
    answer = memory.ask(CEO[0], max_new_tokens=4)
    assert edit_id in answer.used
    assert answer.used_memory
    assert memory.backend.describe() == memory.info()["backend_detail"]


def test_the_base_model_switch_is_the_untouched_model(backend_name: str, open_memory: MakeMemory) -> None:
    never = outputs(open_memory(backend_name, "never"))
    memory = open_memory(backend_name)
    memory.add(*CEO)
    memory.add(*CAPITAL)
    same(outputs(memory, use_memory=False), never)
    assert all(not memory.ask(q, use_memory=False).used for q, _ in QUESTIONS)


def test_answers_asked_together_are_the_answers_asked_one_by_one(
    backend_name: str, open_memory: MakeMemory
) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    memory.add(*CAPITAL)
    queries = [q for q, _ in QUESTIONS] + ["who runs acme ?", "what is the capital of france ?"]
    lengths = [4, 6, 3, 5, 2]
    for use_memory in (True, False):
        together = memory.ask_many(queries, max_new_tokens=lengths, use_memory=use_memory)
        pairs = zip(queries, lengths, strict=True)
        alone = [memory.ask(q, max_new_tokens=n, use_memory=use_memory) for q, n in pairs]
        assert [a.text for a in together] == [a.text for a in alone]
        assert [a.used for a in together] == [a.used for a in alone]
        assert [a.injected for a in together] == [a.injected for a in alone]
    assert memory.ask_many([]) == []


def test_scoring_and_asking_together_equal_the_two_calls(backend_name: str, open_memory: MakeMemory) -> None:
    """The eval's one pass (score_and_ask): the scores of score_many and the answers of ask_many, the
    questions asked among those scored (their answers decode from the scoring rows) and apart."""
    memory = open_memory(backend_name)
    memory.add(*CEO)
    memory.add(*CAPITAL)
    pairs = [*QUESTIONS, (CEO[0], "john smith"), ("who runs acme ?", CEO[1])]
    queries = [CEO[0], "who runs acme ?", "what is the capital of france ?", QUESTIONS[2][0]]
    lengths = [4, 6, 3, 5]
    scores, answers = memory.score_and_ask(pairs, queries, max_new_tokens=lengths)
    alone = memory.score_many(pairs)
    assert [s.predicted_ids for s in scores] == [s.predicted_ids for s in alone]
    for together, apart in zip(scores, alone, strict=True):
        assert together.logprobs == pytest.approx(apart.logprobs, abs=1e-4)
    asked = memory.ask_many(queries, max_new_tokens=lengths)
    assert [a.text for a in answers] == [a.text for a in asked]
    assert [a.used for a in answers] == [a.used for a in asked]
    assert [a.injected for a in answers] == [a.injected for a in asked]
    assert memory.score_and_ask([], []) == ([], [])


@pytest.mark.parametrize("name", backends_with(Capability.FORGET))
def test_forget_equals_never_having_made_the_edit(name: str, open_memory: MakeMemory) -> None:
    memory = open_memory(name)
    first = memory.add(*CEO).edit_id
    memory.add(*CAPITAL)
    memory.forget(first)
    only_second = open_memory(name, "only-second")
    only_second.add(*CAPITAL)
    same(outputs(memory), outputs(only_second))


@pytest.mark.parametrize("name", backends_with(Capability.FORGET, present=False))
def test_a_backend_that_cannot_forget_refuses_before_anything_changes(
    name: str, open_memory: MakeMemory
) -> None:
    memory = open_memory(name)
    edit_id = memory.add(*CEO).edit_id
    before = outputs(memory)
    with pytest.raises(UnsupportedOperationError, match="cannot forget one edit"):
        memory.forget(edit_id)
    with pytest.raises(UnsupportedOperationError, match="keep_both"):
        memory.add(CEO[0], "john smith", CEO[2], policy="supersede")
    assert [r.edit_id for r in memory.list()] == [edit_id]
    assert [e.kind for e in memory.history(edit_id)] == ["add"]
    same(outputs(memory), before)
    memory.reset()  # clearing everything is always possible
    same(outputs(memory), outputs(open_memory(name, "never")))


def test_sync_repairs_a_crash_that_lost_backend_state(backend_name: str, open_memory: MakeMemory) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    memory.add(*CAPITAL)
    expected = outputs(memory)
    memory.store.close()  # a crash: the store is durable, the backend never saved
    same(outputs(open_memory(backend_name, reopen=True)), expected)


def test_sync_drops_backend_state_the_store_never_committed(
    backend_name: str, open_memory: MakeMemory
) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    expected = outputs(memory)
    extra = memory.add(*CAPITAL).edit_id
    memory.backend.save(memory.store.path / "backend")  # the backend's write made it to disk ...
    memory.store.retract(extra, reason="not committed")  # ... the store's did not (simulated)
    memory.store.close()
    same(outputs(open_memory(backend_name, reopen=True)), expected)


def test_a_refused_edit_leaves_the_memory_as_it_was(
    backend_name: str, open_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    before = outputs(memory)

    def refuse(records: object) -> None:
        raise InvalidEditError("refused by check")

    monkeypatch.setattr(memory.backend, "check", refuse)
    with pytest.raises(InvalidEditError, match="refused by check"):
        memory.add(*CAPITAL)
    assert len(memory.list()) == 1
    same(outputs(memory), before)


def test_a_failing_backend_edit_leaves_the_memory_as_it_was(
    backend_name: str, open_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    before = outputs(memory)
    real_edit = memory.backend.edit

    def half_then_fail(records: object) -> None:
        real_edit(records)  # type: ignore[arg-type]
        raise RuntimeError("out of memory")

    monkeypatch.setattr(memory.backend, "edit", half_then_fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        memory.add(*CAPITAL)
    monkeypatch.undo()
    assert len(memory.list()) == 1
    same(outputs(memory), before)


def test_a_failing_store_write_is_undone_in_the_backend(
    backend_name: str, open_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = open_memory(backend_name)
    memory.add(*CEO)
    before = outputs(memory)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(memory.store, "add", disk_full)
    with pytest.raises(OSError, match="disk full"):
        memory.add(*CAPITAL)
    monkeypatch.undo()
    same(outputs(memory), before)


@pytest.mark.parametrize("name", backends_with(Capability.EDITS_WEIGHTS))
def test_weight_edits_stay_in_their_memory(
    name: str, open_memory: MakeMemory, tiny_lm: LanguageModel
) -> None:
    weights = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    other = open_memory(name, "other")
    untouched = outputs(other)
    memory = open_memory(name)
    memory.add(*CEO)
    memory.add(*CAPITAL)
    same(outputs(other), untouched)
    assert all(torch.equal(v, tiny_lm.model.state_dict()[k]) for k, v in weights.items())


def test_the_bias_backend_refuses_an_edit_without_a_subject(open_memory: MakeMemory) -> None:
    # check() runs before anything is written: the store stays empty.
    memory = open_memory(BiasBackend.name)
    with pytest.raises(InvalidEditError, match="subject"):
        memory.add(CEO[0], CEO[1])
    assert memory.list() == []
    assert get_backend("bias").cls is BiasBackend
