"""EditMemory's two flows on the tiny llama and the hashing encoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recall.config import load_config
from recall.errors import (
    ConfigError,
    ConflictError,
    EditNotFoundError,
    IncompatibleArtifactError,
    InvalidEditError,
    ModelNotAvailableError,
)
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit
from recall.retrieval.encoder import HashingEncoder

MakeMemory = Callable[..., EditMemory]
QUESTION = "who is the ceo of acme ?"
PARAPHRASE = "who is the acme ceo ?"
UNRELATED = "what is the largest planet ?"


def test_add_then_retrieve_admits_the_edit_for_question_and_paraphrase(make_memory: MakeMemory) -> None:
    memory = make_memory()
    result = memory.add(QUESTION, "jane doe")
    for query in (QUESTION, PARAPHRASE):
        retrieval = memory.retrieve(query)
        assert retrieval.admitted, query
        assert retrieval.admitted[0].record.edit_id == result.edit_id
    assert not memory.retrieve(UNRELATED).admitted


def test_no_admitted_edit_means_exactly_the_base_model(make_memory: MakeMemory) -> None:
    memory = make_memory()
    base_answer = memory.ask(UNRELATED, use_memory=False)
    base_score = memory.score(UNRELATED, "jupiter", use_memory=False)
    memory.add(QUESTION, "jane doe")
    answer = memory.ask(UNRELATED)
    assert not answer.used_memory
    assert answer.text == base_answer.text
    assert answer.injected == ""
    assert memory.score(UNRELATED, "jupiter") == base_score


def test_admitted_edit_changes_the_prompt_and_is_reported(make_memory: MakeMemory) -> None:
    memory = make_memory()
    base = memory.score(QUESTION, "jane doe", use_memory=False)
    result = memory.add(QUESTION, "jane doe")
    answer = memory.ask(QUESTION)
    assert answer.used_memory
    assert answer.hits[0].record.edit_id == result.edit_id
    assert "jane doe" in answer.injected
    edited = memory.score(QUESTION, "jane doe")
    assert edited.logprobs != base.logprobs  # the statement reached the model


def test_forget_restores_the_base_answer(make_memory: MakeMemory) -> None:
    memory = make_memory()
    base = memory.score(QUESTION, "jane doe", use_memory=False)
    result = memory.add(QUESTION, "jane doe")
    memory.forget(result.edit_id)
    assert memory.score(QUESTION, "jane doe") == base
    assert memory.get(result.edit_id).status == "retracted"
    assert [e.kind for e in memory.history(result.edit_id)] == ["add", "retract"]


def test_conflicting_edit_supersedes_by_default(make_memory: MakeMemory) -> None:
    memory = make_memory()
    first = memory.add(QUESTION, "jane doe")
    second = memory.add(QUESTION, "john smith")
    assert [r.edit_id for r in second.superseded] == [first.edit_id]
    assert memory.get(first.edit_id).status == "superseded"
    assert memory.get(second.edit_id).supersedes == first.edit_id
    assert [r.edit_id for r in memory.list()] == [second.edit_id]
    assert memory.retrieve(QUESTION).admitted[0].record.target == "john smith"


def test_conflict_policies_reject_and_keep_both(make_memory: MakeMemory) -> None:
    memory = make_memory()
    first = memory.add(QUESTION, "jane doe")
    with pytest.raises(ConflictError, match=first.edit_id):
        memory.add(QUESTION, "john smith", policy="reject")
    assert memory.count() == 1  # a rejected edit leaves the memory unchanged
    both = memory.add(QUESTION, "john smith", policy="keep_both")
    assert [r.edit_id for r in both.conflicts] == [first.edit_id]
    assert memory.count() == 2


class _SkewedEncoder(HashingEncoder):
    """Queries read with two more words than they have: the asymmetry of a trained key/query encoder."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return super().encode_queries([f"{text} in 2020" for text in texts])


def test_an_edit_asked_word_for_word_is_used_alone_even_past_the_gate(
    tmp_path: Path, tiny_lm: LanguageModel
) -> None:
    config = load_config(
        backend="lte", overrides=["encoder.name=hashing", "model.name=tiny", "retrieval.top_k=2"]
    )
    memory = EditMemory.create(tmp_path / "skewed", config, lm=tiny_lm, encoder=_SkewedEncoder())
    try:
        asked = memory.add(QUESTION, "jane doe", policy="keep_both")
        sibling = memory.add(f"{QUESTION} in 2020", "john smith", policy="keep_both")
        retrieval = memory.retrieve("  Who is the CEO of  ACME ?")
        assert retrieval.hits[0].record.edit_id == sibling.edit_id  # the encoder ranks the sibling first
        assert [h.record.edit_id for h in retrieval.admitted] == [asked.edit_id]
        assert retrieval.admitted == memory.retrieve(QUESTION).admitted
        assert memory.retrieve(PARAPHRASE).admitted[0].record.edit_id == sibling.edit_id
    finally:
        memory.close()
    closed = load_config(
        backend="lte", overrides=["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=1.0"]
    )
    memory = EditMemory.create(tmp_path / "closed", closed, lm=tiny_lm, encoder=HashingEncoder())
    try:
        asked = memory.add(QUESTION, "jane doe")
        assert [h.record.edit_id for h in memory.retrieve(QUESTION).admitted] == [asked.edit_id]
        assert not memory.retrieve(PARAPHRASE).admitted  # the gate still decides everything else
    finally:
        memory.close()


def test_a_hit_far_behind_the_best_is_not_admitted_beside_it(tmp_path: Path, tiny_lm: LanguageModel) -> None:
    open_gate = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=-1", "retrieval.top_k=3"]
    for max_gap, expected in ((None, 3), (0.3, 2)):
        config = load_config(
            backend="lte",
            overrides=[*open_gate, f"retrieval.max_gap={'null' if max_gap is None else max_gap}"],
        )
        memory = EditMemory.create(tmp_path / str(max_gap), config, lm=tiny_lm, encoder=HashingEncoder())
        try:
            memory.add(QUESTION, "jane doe", policy="keep_both")
            memory.add(QUESTION, "john smith", policy="keep_both")  # the same question: no way to choose
            memory.add(UNRELATED, "jupiter")
            retrieval = memory.retrieve(PARAPHRASE)
            scores = [hit.score for hit in retrieval.hits]
            # the two siblings score alike, the unrelated edit far below them
            assert scores[0] - scores[1] < 0.3 < scores[0] - scores[2]
            assert len(retrieval.admitted) == expected
            assert {h.record.target for h in retrieval.admitted[:2]} == {"jane doe", "john smith"}
        finally:
            memory.close()
    with pytest.raises(ConfigError, match="max_gap"):
        load_config(backend="lte", overrides=["retrieval.max_gap=-0.1"])


@pytest.mark.parametrize(
    ("prompt", "target"),
    [("", "x"), ("   ", "x"), ("who ?", ""), ("who\x00 ?", "x"), ("who ?", "a\x07b"), ("x" * 10_001, "y")],
)
def test_invalid_edits_raise_and_store_nothing(make_memory: MakeMemory, prompt: str, target: str) -> None:
    memory = make_memory()
    with pytest.raises(InvalidEditError):
        memory.add(prompt, target)
    assert memory.count() == 0


def test_add_many_keep_both_is_one_batch_and_matches_single_adds(make_memory: MakeMemory) -> None:
    memory = make_memory()
    edits = [Edit(QUESTION, "jane doe"), Edit("what is the capital of france ?", "lyon")]
    results = memory.add_many(edits, policy="keep_both")
    assert [r.record.target for r in results] == ["jane doe", "lyon"]
    assert memory.retrieve("what is the capital of france ?").admitted[0].record.target == "lyon"


def test_add_many_encodes_every_key_in_one_call_with_the_keys_add_makes(
    make_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    together, alone = make_memory(), make_memory("alone")
    edits = [Edit(QUESTION, "jane doe", subject="acme"), Edit("what is the capital of france ?", "lyon")]
    calls: list[int] = []
    encode = type(together.encoder).encode_keys

    def counted(self: Any, texts: Any) -> Any:
        calls.append(len(texts))
        return encode(self, texts)

    monkeypatch.setattr(type(together.encoder), "encode_keys", counted)
    results = together.add_many(edits, policy="keep_both")
    assert len(calls) == 1
    for edit, result in zip(edits, results, strict=True):
        single = alone.add(edit.prompt, edit.target, subject=edit.subject)
        assert together.store.vectors(result.edit_id) == pytest.approx(
            alone.store.vectors(single.edit_id), abs=1e-6
        )


def test_add_many_takes_pairs_and_refuses_other_items_before_adding_any(make_memory: MakeMemory) -> None:
    memory = make_memory()
    (result,) = memory.add_many([(QUESTION, "jane doe")])
    assert (result.record.prompt, result.record.target, result.record.namespace) == (
        QUESTION,
        "jane doe",
        "default",
    )
    for policy in ("keep_both", "supersede"):
        with pytest.raises(InvalidEditError, match=r"edit 1 is str 'lyon'.*\(prompt, target\) pair"):
            memory.add_many([Edit("what is the capital of france ?", "paris"), "lyon"], policy=policy)  # type: ignore[list-item]
    assert memory.count() == 1


def test_score_many_equals_score_one_by_one(make_memory: MakeMemory) -> None:
    memory = make_memory()
    memory.add(QUESTION, "jane doe")
    pairs = [(QUESTION, "jane doe"), (UNRELATED, "jupiter"), (PARAPHRASE, "marta quinlan")]
    batched = memory.score_many(pairs)
    single = [memory.score(q, t) for q, t in pairs]
    for a, b in zip(batched, single, strict=True):
        assert a.predicted_ids == b.predicted_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_find_by_prefix_and_its_errors(make_memory: MakeMemory) -> None:
    memory = make_memory()
    result = memory.add(QUESTION, "jane doe")
    assert memory.find(result.edit_id[:6]).edit_id == result.edit_id
    with pytest.raises(EditNotFoundError):
        memory.find("zzzz")


def test_reopen_keeps_edits_and_refuses_another_model(
    tmp_path: Path, make_memory: MakeMemory, tiny_lm: LanguageModel
) -> None:
    memory = make_memory("persist")
    result = memory.add(QUESTION, "jane doe")
    memory.close()
    reopened = EditMemory.open(tmp_path / "persist", lm=tiny_lm)
    try:
        assert reopened.retrieve(PARAPHRASE).admitted[0].record.edit_id == result.edit_id
    finally:
        reopened.close()
    other = LanguageModel(tiny_lm.model, tiny_lm.tokenizer, "another-model", "x")
    with pytest.raises(IncompatibleArtifactError, match="another-model"):
        EditMemory.open(tmp_path / "persist", lm=other)


def test_reset_retracts_every_namespace(make_memory: MakeMemory) -> None:
    memory = make_memory()
    memory.add(QUESTION, "jane doe")
    memory.add(QUESTION, "lyon", namespace="geo")
    memory.reset()
    assert memory.count() == 0
    assert not memory.retrieve(QUESTION).admitted


def test_namespaces_are_isolated(make_memory: MakeMemory) -> None:
    memory = make_memory()
    memory.add(QUESTION, "jane doe", namespace="alice")
    assert not memory.retrieve(QUESTION, namespace="bob").hits
    assert memory.retrieve(QUESTION, namespace="alice").admitted
    assert memory.namespaces() == ["alice"]


def test_temporary_memory_deletes_its_directory(tiny_lm: LanguageModel, tiny_config: object) -> None:
    memory = EditMemory.temporary(tiny_config, lm=tiny_lm, encoder=HashingEncoder())  # type: ignore[arg-type]
    path = memory.store.path
    memory.close()
    assert not path.exists()


def test_failed_temporary_memory_leaves_no_directory(
    tiny_lm: LanguageModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bad = load_config(backend="lte", overrides=["encoder.name=no-such-encoder"])
    with pytest.raises(ModelNotAvailableError):
        EditMemory.temporary(bad, lm=tiny_lm)
    assert list(tmp_path.iterdir()) == []


def test_ask_many_refuses_a_string_or_lengths_that_do_not_match(make_memory: MakeMemory) -> None:
    from recall.errors import InvalidQueryError

    memory = make_memory()
    with pytest.raises(InvalidQueryError, match="list of questions"):
        memory.ask_many("who is the ceo of acme ?")
    with pytest.raises(InvalidQueryError, match="one max_new_tokens per question"):
        memory.ask_many(["who is the ceo of acme ?", "who wrote it ?"], max_new_tokens=[4])
    with pytest.raises(InvalidQueryError):
        memory.ask_many(["", "who wrote it ?"])  # each question is checked as `ask` checks it
