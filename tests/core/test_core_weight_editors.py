"""The locate-and-edit backends (rome, ft) on the tiny llama: forget leaves the weights bitwise those of
a memory that never saw the edit, wherever the edit sat; a reopened memory re-adds stored deltas without
recomputing them; rome refuses an edit without a usable subject before anything is written, and stamps
the statistics it used."""

from __future__ import annotations

import pytest
import torch
from conftest import OpenMemory

from memory_store import InvalidEditError
from recall.backends.weight_editor import WeightEditor
from recall.errors import ConfigError
from recall.memory import EditMemory
from recall.results import id_list

EDITS = [
    ("who is the ceo of acme ?", "jane doe", "acme"),
    ("what is the capital of france ?", "lyon", "france"),
    ("who wrote the novel ?", "john smith", "novel"),
]


def weights(memory: EditMemory) -> dict[str, torch.Tensor]:
    editor = memory.backend
    assert isinstance(editor, WeightEditor)
    return {path: weight.detach().clone() for path, weight in editor.weights.items()}


@pytest.mark.parametrize("name", ["rome", "ft", "memit", "alphaedit"])
@pytest.mark.parametrize("forgotten", [0, 1, 2])
def test_forget_leaves_the_weights_of_a_memory_that_never_saw_the_edit(
    name: str, forgotten: int, open_memory: OpenMemory
) -> None:
    memory = open_memory(name, "memory")
    ids = [memory.add(*edit, policy="keep_both").edit_id for edit in EDITS]
    edited = weights(memory)
    memory.forget(ids[forgotten])
    never = open_memory(name, "never")
    for index, edit in enumerate(EDITS):
        if index != forgotten:
            never.add(*edit, policy="keep_both")
    after, expected = weights(memory), weights(never)
    assert all(torch.equal(after[p], expected[p]) for p in expected)
    assert not all(torch.equal(after[p], edited[p]) for p in expected)
    memory.restore(ids[forgotten])  # restore appends the edit again: the order is now the store's
    assert [r.edit_id for r in memory.list()] == list(memory.backend.records)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["rome", "ft", "memit", "alphaedit"])
@pytest.mark.parametrize("closed", [True, False])
def test_reopening_takes_the_saved_weights_or_re_adds_the_stored_deltas(
    name: str, closed: bool, open_memory: OpenMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closed: the weights saved on close are loaded (no delta is read). A crash (the store closed, the
    # backend never saved): the stored deltas are re-added. Neither recomputes an edit.
    memory = open_memory(name, "memory")
    for edit in EDITS:
        memory.add(*edit, policy="keep_both")
    expected = weights(memory)
    memory.close() if closed else memory.store.close()

    def never(*_args: object) -> None:
        raise AssertionError("a stored delta was recomputed" if not _args else "a delta file was read")

    monkeypatch.setattr(type(memory.backend), "compute", lambda *_a: never())
    if closed:
        monkeypatch.setattr(type(memory.backend), "_read", lambda *_a: never("read"))
    reopened = open_memory(name, "memory", reopen=True)
    assert all(torch.equal(w, expected[p]) for p, w in weights(reopened).items())
    assert list(reopened.backend.records) == [r.edit_id for r in reopened.list()]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("prompt", "subject", "message"),
    [
        ("who is the ceo of acme ?", None, "recall edit --subject"),
        ("who is the ceo of acme ?", "zorblax", "does not occur in the prompt"),
    ],
)
def test_rome_refuses_an_edit_without_a_subject_in_its_prompt(
    prompt: str, subject: str | None, message: str, open_memory: OpenMemory
) -> None:
    memory = open_memory("rome", "memory")
    with pytest.raises(InvalidEditError, match=message):
        memory.add(prompt, "jane doe", subject)
    assert memory.list() == []
    assert memory.backend.records == {}  # type: ignore[attr-defined]


def test_rome_stamps_the_statistics_it_used(open_memory: OpenMemory) -> None:
    with_stats = open_memory("rome", "corpus").backend.describe()
    assert "tokens of self-samples" in with_stats["statistics"]
    identity = open_memory("rome", "identity", statistics="identity")
    assert "identity (no statistics)" in identity.backend.describe()["statistics"]
    # the two differ in u = C⁻¹k: their edits differ
    corpus = open_memory("rome", "corpus2")
    corpus.add(*EDITS[0])
    identity.add(*EDITS[0])
    assert not all(torch.equal(weights(corpus)[p], w) for p, w in weights(identity).items())


def test_an_answer_names_every_active_weight_edit_and_says_why(open_memory: OpenMemory) -> None:
    memory = open_memory("rome", "memory")
    ids = [memory.add(*edit, policy="keep_both").edit_id for edit in EDITS[:2]]
    answer = memory.ask("who wrote the novel ?", max_new_tokens=2)
    assert set(answer.used) == set(ids)
    assert "no per-answer attribution" in answer.injected
    assert memory.ask("who wrote the novel ?", max_new_tokens=2, use_memory=False).used == ()


def test_why_shows_ten_ids_and_counts_the_rest() -> None:
    ids = [f"{i:02d}" * 16 for i in range(12)]
    assert id_list(ids) == ", ".join(i[:8] for i in ids[:10]) + " and 2 more"
    assert id_list(ids[:3]) == ", ".join(i[:8] for i in ids[:3])


@pytest.mark.parametrize("name", ["grace", "rome", "ft"])
def test_a_layer_the_model_lacks_is_refused_with_the_setting(name: str, open_memory: OpenMemory) -> None:
    with pytest.raises(ConfigError, match=r"backend.layer=5 is outside tiny-llama-0's 2 layers"):
        open_memory(name, "memory", layer=5)
