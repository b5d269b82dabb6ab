"""GRACE (recall/backends/grace): the codebook's insertion rule (new ball, split on another label,
coverage on the same label), exact forget by rebuilding, entries on disk before `edit` returns, and
the provenance it reports. The memory contract runs on both grace backends in test_contract_memory.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from memory_store import EditRecord, SearchHit
from recall.backends.base import GenerationConfig
from recall.backends.grace import GraceBackend, GraceConfig, RetrievalGraceBackend
from recall.backends.grace.codebook import SPLIT_GAP, Entry, build
from recall.backends.grace.training import Steps, ValueTask, train_values
from recall.config import RecallConfig
from recall.lm.hooks import forward_hook
from recall.lm.loading import LanguageModel
from recall.lm.split import StemCache


def entry(edit_id: str, x: float, label: tuple[int, ...] = (1,)) -> Entry:
    return Entry(edit_id, torch.tensor([x, 0.0]), torch.tensor([x]), label)


def test_a_far_key_opens_a_new_ball() -> None:
    book = build([entry("a", 0.0), entry("b", 3.0)], eps_init=1.0)
    assert book.edit_ids == ["a", "b"]
    assert book.radii == [1.0, 1.0]


def test_an_overlapping_key_with_another_label_splits_both_balls() -> None:
    book = build([entry("a", 0.0), entry("b", 1.5, label=(2,))], eps_init=1.0)
    assert book.edit_ids == ["a", "b"]
    assert book.radii == pytest.approx([0.75 - SPLIT_GAP, 0.75])
    index, _ = book.lookup(torch.tensor([[0.7, 0.0], [0.8, 0.0]]))
    assert index.tolist() == [0, 1]


def test_an_overlapping_key_with_the_same_label_grows_the_old_ball() -> None:
    book = build([entry("a", 0.0), entry("b", 1.5)], eps_init=1.0)
    assert book.edit_ids == ["a"]
    assert book.radii == [1.5]
    assert book.owner == {"a": 0, "b": 0}
    # labels are compared exactly: the same mean of token ids is another label
    assert len(build([entry("a", 0.0, (1, 3)), entry("b", 1.5, (2, 2))], eps_init=1.0)) == 2


def test_forgetting_an_edit_undoes_the_split_it_caused() -> None:
    edits = [entry("a", 0.0), entry("b", 1.5, label=(2,)), entry("c", 5.0)]
    without_b = build([e for e in edits if e.edit_id != "b"], eps_init=1.0)
    assert without_b.radii == [1.0, 1.0]
    assert without_b.edit_ids == ["a", "c"]


QUESTION = "who is the ceo of acme ?"


@pytest.fixture
def grace(tiny_lm: LanguageModel, backend_config: Callable[[str], RecallConfig]) -> GraceBackend:
    # The tiny llama's activations are small: a tight ball, so that another question stays outside.
    config = backend_config("grace").backend
    assert isinstance(config, GraceConfig)
    return GraceBackend(dataclasses.replace(config, eps_init=0.05), tiny_lm)


def test_entries_are_on_disk_when_edit_returns(
    grace: GraceBackend, tmp_path: Path, tiny_lm: LanguageModel
) -> None:
    grace.load(tmp_path)
    record = EditRecord(prompt=QUESTION, target="jane doe")
    grace.edit([record])
    assert (tmp_path / "grace" / f"{record.edit_id}.safetensors").is_file()
    reopened = GraceBackend(grace.config, tiny_lm)
    reopened.load(tmp_path)  # a crash right after edit(): nothing to retrain
    assert torch.equal(reopened.entries[record.edit_id].value, grace.entries[record.edit_id].value)
    grace.forget([record.edit_id])
    assert not (tmp_path / "grace" / f"{record.edit_id}.safetensors").exists()


def test_the_firing_entry_is_named_with_its_distance_and_radius(grace: GraceBackend) -> None:
    record = EditRecord(prompt=QUESTION, target="jane doe")
    grace.edit([record])
    out = grace.generate(QUESTION, (), GenerationConfig(max_new_tokens=2))
    assert out.used == (record.edit_id,)
    assert f"edit {record.edit_id[:8]}" in out.injected
    assert "distance 0.000 <= radius 0.050" in out.injected
    assert (
        grace.generate("what is the capital of france ?", (), GenerationConfig(max_new_tokens=2)).used == ()
    )


def test_values_trained_in_one_batch_are_the_values_trained_alone(tiny_lm: LanguageModel) -> None:
    # Prompts of different lengths (left padding, positions) and targets of different lengths.
    texts = [
        ("who is the ceo of acme ?", "jane doe"),
        ("what is the capital ?", "lyon"),
        ("who wrote the novel ?", "marta"),
    ]
    tasks = [
        ValueTask(tiny_lm.tokenizer(p).input_ids, tiny_lm.tokenizer(t, add_special_tokens=False).input_ids, i)
        for i, (p, t) in enumerate(texts)
    ]
    steps = Steps("cold", "adam", 2.0, n_iter=20, stop_loss=10.0)
    path = "model.layers.1.mlp.down_proj"
    batched = train_values(tiny_lm, path, 1, tasks, steps)
    for task, together in zip(tasks, batched, strict=True):
        (alone,) = train_values(tiny_lm, path, 1, [task], steps)
        assert torch.allclose(together.key, alone.key, atol=1e-5)
        assert torch.allclose(together.value, alone.value, atol=1e-4)
        assert (together.steps, together.converged) == (alone.steps, alone.converged)
    # On the tiny random model a value moves one token, not two: rows stop on their own
    assert [(one.converged, one.steps) for one in batched] == [(False, 20), (True, 1), (True, 1)]


def test_a_trained_value_makes_the_model_say_the_target(tiny_lm: LanguageModel) -> None:
    prompt = tiny_lm.tokenizer("who is the ceo of acme ?").input_ids
    target = tiny_lm.tokenizer("jane", add_special_tokens=False).input_ids
    # the tiny model's logits are small: only the argmax part of the stop rule can hold
    for steps in (Steps("cold", "adam", 2.0, 50, 10.0), Steps("warm", "rprop", 2.0, 50, 10.0)):
        (learned,) = train_values(
            tiny_lm, "model.layers.0.mlp.down_proj", 0, [ValueTask(prompt, target, 7)], steps
        )
        assert learned.converged
        module = tiny_lm.model.model.layers[0].mlp.down_proj

        def put(_m: torch.nn.Module, _i: Any, out: torch.Tensor, value: torch.Tensor = learned.value) -> Any:
            out = out.clone()
            out[0, len(prompt) - 1] = value
            return out

        with torch.no_grad(), forward_hook(module, put):
            logits = tiny_lm.model(input_ids=torch.tensor([prompt + target[:-1]])).logits[0]
        assert logits[len(prompt) - 1 :].argmax(-1).tolist() == target


def test_the_stem_cache_changes_no_value(tiny_lm: LanguageModel) -> None:
    def ids(text: str) -> list[int]:
        return list(tiny_lm.tokenizer(text, add_special_tokens=False).input_ids)

    tasks = [
        ValueTask(ids("who is the ceo of acme ?"), ids("jane"), 1),
        ValueTask(ids("who is the author ?"), ids("marta"), 2),
    ]
    steps = Steps("cold", "adam", 2.0, n_iter=5, stop_loss=0.0)  # five steps, always
    path = "model.layers.1.mlp.down_proj"
    plain = train_values(tiny_lm, path, 1, tasks, steps)
    stem = StemCache(tiny_lm, ids("who is the ceo"))  # the second prompt shares "who is the" only
    for stemmed in (
        train_values(tiny_lm, path, 1, tasks, steps, stem),
        train_values(tiny_lm, path, 1, tasks[:1], steps, stem),
    ):
        for a, b in zip(plain, stemmed, strict=False):
            assert torch.allclose(a.key, b.key, atol=1e-5)
            assert torch.allclose(a.value, b.value, atol=1e-4)


def test_an_edit_whose_value_never_converges_is_kept_with_a_warning(
    grace: GraceBackend, tiny_lm: LanguageModel, caplog: pytest.LogCaptureFixture
) -> None:
    # The tiny model's logits are small: a mean loss under 0.3 is out of reach, an argmax is not.
    with caplog.at_level("WARNING", logger="recall.backends.grace.backend"):
        grace.edit([EditRecord(prompt=QUESTION, target="jane")])
    assert f"did not make the model answer 'jane' within {grace.config.n_iter} steps" in caplog.text
    caplog.clear()
    loose = GraceBackend(dataclasses.replace(grace.config, stop_loss=10.0), tiny_lm)
    with caplog.at_level("WARNING", logger="recall.backends.grace.backend"):
        loose.edit([EditRecord(prompt=QUESTION, target="jane")])
    assert caplog.text == ""
    assert len(loose.entries) == len(grace.entries) == 1


def test_pick_key_chooses_among_admitted_edits_by_grace_distance(
    tiny_lm: LanguageModel, backend_config: Callable[[str], RecallConfig]
) -> None:
    config = backend_config("grace_retrieval").backend
    assert isinstance(config, GraceConfig)
    ceo = EditRecord(prompt=QUESTION, target="jane")
    capital = EditRecord(prompt="what is the capital of france ?", target="lyon")
    hits = (SearchHit(capital, 0.9, 0), SearchHit(ceo, 0.8, 1))  # retrieval ranks the other edit first
    used = {}
    for pick in ("first", "key"):
        grace = RetrievalGraceBackend(dataclasses.replace(config, pick=pick), tiny_lm)
        grace.edit([ceo, capital])
        used[pick] = grace.generate(QUESTION, hits, GenerationConfig(max_new_tokens=1)).used
        assert grace.generate(QUESTION, (), GenerationConfig(max_new_tokens=1)).used == ()
    assert used == {"first": (capital.edit_id,), "key": (ceo.edit_id,)}
