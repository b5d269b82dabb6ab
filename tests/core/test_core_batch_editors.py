"""The batched weight editors (memit, alphaedit) on tiny llamas: an add_many batch is one journal entry;
forgetting one of its edits leaves the weights bitwise those of a memory that made the batch without it;
a reopened memory takes the batch back as stored (alphaedit's running key sum included); MEMIT spreads a
batch over several layers and makes the model say the targets; AlphaEdit's update leaves the keys its
statistics hold where they were."""

from __future__ import annotations

import pytest
import torch
from conftest import OpenMemory

from recall.backends.alphaedit import AlphaEditBackend, null_space
from recall.backends.memit import MemitBackend
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit

EDITS = [
    Edit("who is the ceo of acme ?", "jane doe", "acme"),
    Edit("what is the capital of france ?", "lyon", "france"),
    Edit("who wrote the novel ?", "john smith", "novel"),
]


def weights(memory: EditMemory) -> dict[str, torch.Tensor]:
    editor = memory.backend
    assert isinstance(editor, MemitBackend)
    return {path: weight.detach().clone() for path, weight in editor.weights.items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[p], b[p]) for p in b)


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
@pytest.mark.parametrize("forgotten", [0, 1])
def test_forgetting_one_edit_of_a_batch_solves_the_batch_again_without_it(
    name: str, forgotten: int, open_memory: OpenMemory
) -> None:
    memory = open_memory(name, "memory")
    ids = [r.edit_id for r in memory.add_many(EDITS[:2], policy="keep_both")]
    memory.add(EDITS[2].prompt, EDITS[2].target, EDITS[2].subject, policy="keep_both")
    assert len(memory.backend.journal) == 2  # type: ignore[attr-defined]
    edited = weights(memory)
    memory.forget(ids[forgotten])
    never = open_memory(name, "never")
    never.add_many([e for i, e in enumerate(EDITS[:2]) if i != forgotten], policy="keep_both")
    never.add(EDITS[2].prompt, EDITS[2].target, EDITS[2].subject, policy="keep_both")
    assert same(weights(memory), weights(never))
    assert not same(weights(memory), edited)
    # the remaining entry files: one per batch, named by its first edit
    folder = memory.backend.folder  # type: ignore[attr-defined]
    files = sorted(p.stem for p in folder.glob("*.safetensors"))
    assert files == sorted(memory.backend.journal)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
@pytest.mark.parametrize("closed", [True, False])
def test_a_reopened_memory_takes_its_batches_back_as_stored(
    name: str, closed: bool, open_memory: OpenMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = open_memory(name, "memory")
    memory.add_many(EDITS[:2], policy="keep_both")
    memory.add_many(EDITS[2:], policy="keep_both")
    expected = weights(memory)
    previous = [s.clone() for s in getattr(memory.backend, "previous", [])]
    memory.close() if closed else memory.store.close()
    monkeypatch.setattr(type(memory.backend), "compute", lambda *_a: pytest.fail("a batch was recomputed"))
    reopened = open_memory(name, "memory", reopen=True)
    assert same(weights(reopened), expected)
    editor = reopened.backend
    assert isinstance(editor, MemitBackend)
    ids = [r.edit_id for r in reopened.list()]
    assert [list(e.edit_ids) for e in editor.journal.values()] == [ids[:2], ids[2:]]
    for before, after in zip(previous, getattr(reopened.backend, "previous", []), strict=True):
        assert torch.equal(before, after)  # alphaedit's S: from the snapshot, or summed from the files


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_a_batch_spread_over_two_layers_raises_every_target(
    name: str, open_memory: OpenMemory, deep_lm: LanguageModel
) -> None:
    memory = open_memory(name, "deep", lm=deep_lm, layers=(0, 1))
    before = [memory.score(e.prompt, e.target, use_memory=False).mean_logprob for e in EDITS]
    memory.add_many(EDITS, policy="keep_both")
    after = [memory.score(e.prompt, e.target).mean_logprob for e in EDITS]
    assert all(a > b + 0.5 for a, b in zip(after, before, strict=True)), (before, after)
    changed = [p for p, w in weights(memory).items() if not torch.equal(w, memory.backend.base[p])]  # type: ignore[attr-defined]
    assert len(changed) == 2


def test_alphaedit_leaves_the_outputs_of_the_keys_its_statistics_hold(
    open_memory: OpenMemory, deep_lm: LanguageModel
) -> None:
    memory = open_memory("alphaedit", "deep", lm=deep_lm, layers=(0, 1))
    editor = memory.backend
    assert isinstance(editor, AlphaEditBackend)
    memory.add_many(EDITS, policy="keep_both")
    for index, path in enumerate(editor.paths):
        delta = weights(memory)[path] - editor.base[path]  # (d_out, d_in)
        moment = editor.moments[editor.layers[index]]
        assert moment is not None
        values, vectors = torch.linalg.eigh(moment.matrix.double())
        kept = editor.kept[index]
        principal = vectors[:, kept:].float()  # what P projects away: C's large directions
        assert kept < len(values)
        assert float((delta @ principal).norm()) < 1e-4 * float(delta.norm())


def test_the_null_space_keeps_the_smallest_directions_up_to_the_energy() -> None:
    moment = torch.diag(torch.tensor([1.0, 2.0, 3.0, 94.0]))
    basis = null_space(moment, 0.06)  # 1 + 2 + 3 = 6 of 100
    assert basis.shape == (4, 3)
    assert torch.allclose(basis @ basis.T, torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0])).double())


def test_add_many_under_supersede_is_one_batch_unless_an_edit_meets_its_question(
    open_memory: OpenMemory,
) -> None:
    memory = open_memory("memit", "memory")
    editor = memory.backend
    assert isinstance(editor, MemitBackend)
    memory.add_many(EDITS[:2], policy="supersede")  # distinct questions: one batch
    assert [len(e.edit_ids) for e in editor.journal.values()] == [2]
    # the first edit's question again, beside a new one: one by one, and the old answer is superseded
    results = memory.add_many([Edit(EDITS[0].prompt, "marta quinlan", "acme"), EDITS[2]], policy="supersede")
    assert [r.edit_id for r in results[0].superseded] == [r.edit_id for r in memory.list(status="superseded")]
    assert [len(e.edit_ids) for e in editor.journal.values()] == [1, 1, 1]  # the batch lost one: re-solved
    # two edits of one question in one batch are not a batch either: the second supersedes the first
    twins = memory.add_many([Edit("who wrote the book ?", "jane doe", "book")] * 2, policy="supersede")
    assert [r.edit_id for r in twins[1].superseded] == [twins[0].edit_id]
