"""What an added or restored edit meets: edits of the same question (the conflict policy acts on them),
close edits with another answer (reported, left alone), and `restore` undoing a forget or a supersede."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import pytest

from memory_store.errors import InvalidTransitionError
from recall.cli.memory import run_memory_command
from recall.config import load_config
from recall.errors import ConfigError
from recall.memory import EditMemory
from recall.results import Edit
from recall.retrieval.encoder import HashingEncoder

MakeMemory = Callable[..., EditMemory]
QUESTION = "who is the ceo of acme ?"
CLOSE = "who is the ceo of acme corporation in 2020 ?"
BASE_OVERRIDES = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]


def _cosine(a: str, b: str) -> float:
    keys = HashingEncoder().encode_keys([a, b])  # (2, dim), unit rows
    return float(np.dot(keys[0], keys[1]))


def _config_around(cosine: float, similar: bool = True) -> list[str]:
    """Overrides that put `cosine` between conflict.similar_cosine and conflict.min_cosine."""
    floor = f"{cosine - 0.05:.4f}" if similar else "null"
    return [*BASE_OVERRIDES, f"conflict.min_cosine={cosine + 0.05:.4f}", f"conflict.similar_cosine={floor}"]


def test_a_close_edit_with_another_answer_is_reported_and_both_stay_active(make_memory: MakeMemory) -> None:
    cosine = _cosine(QUESTION, CLOSE)
    assert 0.3 < cosine < 0.9  # the pair sits between the two cut-offs chosen below
    memory = make_memory(config=load_config(backend="lte", overrides=_config_around(cosine)))
    first = memory.add(QUESTION, "jane doe")
    second = memory.add(CLOSE, "john smith")
    assert not second.superseded
    assert not second.conflicts
    assert [hit.record.edit_id for hit in second.similar] == [first.edit_id]
    assert second.similar[0].score == pytest.approx(cosine, abs=1e-4)
    assert {r.edit_id for r in memory.list()} == {first.edit_id, second.edit_id}


def test_a_close_edit_with_the_same_answer_or_with_the_report_off_says_nothing(
    make_memory: MakeMemory,
) -> None:
    cosine = _cosine(QUESTION, CLOSE)
    memory = make_memory("same-answer", load_config(backend="lte", overrides=_config_around(cosine)))
    memory.add(QUESTION, "jane doe")
    assert memory.add(CLOSE, "Jane Doe").similar == ()  # the same answer, in other case
    off = make_memory("off", load_config(backend="lte", overrides=_config_around(cosine, similar=False)))
    off.add(QUESTION, "jane doe")
    assert off.add(CLOSE, "john smith").similar == ()


def test_a_keep_both_batch_reports_what_each_edit_meets_within_the_batch_and_before_it(
    make_memory: MakeMemory,
) -> None:
    cosine = _cosine(QUESTION, CLOSE)
    memory = make_memory(config=load_config(backend="lte", overrides=_config_around(cosine)))
    before = memory.add(QUESTION, "jane doe")
    again, close, far = memory.add_many(
        [Edit(QUESTION, "ruth okafor"), Edit(CLOSE, "john smith"), Edit("what colour is the sky ?", "green")],
        policy="keep_both",
    )
    assert [r.edit_id for r in again.conflicts] == [before.edit_id]  # the same question, kept beside it
    assert {h.record.edit_id for h in close.similar} == {before.edit_id, again.edit_id}
    assert {h.record.edit_id for h in again.similar} == {close.edit_id}  # a later edit of the same batch
    assert (far.conflicts, far.similar) == ((), ())
    assert len(memory.list()) == 4


def test_similar_cosine_above_min_cosine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"conflict\.similar_cosine"):
        load_config(backend="lte", overrides=["conflict.min_cosine=0.9", "conflict.similar_cosine=0.95"])


def test_restore_undoes_a_forget(make_memory: MakeMemory) -> None:
    memory = make_memory()
    added = memory.add(QUESTION, "jane doe")
    edited = memory.score(QUESTION, "jane doe")
    memory.forget(added.edit_id)
    restored = memory.restore(added.edit_id)
    assert restored.record.status == "active"
    assert not restored.conflicts
    assert memory.retrieve(QUESTION).admitted[0].record.edit_id == added.edit_id
    assert memory.score(QUESTION, "jane doe") == edited
    assert [e.kind for e in memory.history(added.edit_id)] == ["add", "retract", "restore"]


def test_restore_of_a_superseded_edit_keeps_its_successor_beside_it(make_memory: MakeMemory) -> None:
    memory = make_memory()
    first = memory.add(QUESTION, "jane doe")
    second = memory.add(QUESTION, "john smith")
    assert [r.edit_id for r in second.superseded] == [first.edit_id]
    restored = memory.restore(first.edit_id)
    assert [r.edit_id for r in restored.conflicts] == [second.edit_id]
    assert {r.edit_id for r in memory.list()} == {first.edit_id, second.edit_id}


def test_restore_of_an_active_edit_is_refused(make_memory: MakeMemory) -> None:
    memory = make_memory()
    added = memory.add(QUESTION, "jane doe")
    with pytest.raises(InvalidTransitionError, match="active"):
        memory.restore(added.edit_id)


def test_conflicts_lists_each_pair_once_with_different_answers_in_its_own_namespace(
    make_memory: MakeMemory,
) -> None:
    cosine = _cosine(QUESTION, CLOSE)
    memory = make_memory(config=load_config(backend="lte", overrides=_config_around(cosine)))
    first, again, duplicate, close, _elsewhere, gone = memory.add_many(
        [
            Edit(QUESTION, "jane doe"),
            Edit(QUESTION, "ruth okafor"),  # the same question, another answer
            Edit(QUESTION, "Jane Doe"),  # the same answer as `first`: a duplicate of it
            Edit(CLOSE, "john smith"),  # a close question, another answer
            Edit(QUESTION, "marta quinlan", namespace="work"),  # another namespace
            Edit(CLOSE, "ann lee"),
        ],
        policy="keep_both",
    )
    memory.forget(gone.edit_id)
    pairs = memory.conflicts()
    found = {(p.older.edit_id, p.newer.edit_id): p.same_question for p in pairs}
    ids = [e.edit_id for e in (first, again, duplicate, close)]
    assert found == {
        (ids[0], ids[1]): True,
        (ids[1], ids[2]): True,
        (ids[0], ids[3]): False,
        (ids[1], ids[3]): False,
        (ids[2], ids[3]): False,
    }
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    assert memory.conflicts("work") == []
    assert len(memory.conflicts(None)) == len(pairs)  # namespaces are checked each on its own


def test_recall_conflicts_prints_the_pairs_and_how_to_settle_them(
    make_memory: MakeMemory, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = make_memory()
    args = argparse.Namespace(command="conflicts", namespace="default", every_namespace=False)
    run_memory_command(memory, args)
    assert capsys.readouterr().out == "0 pair(s) in namespace default\n"
    first, second = memory.add_many(
        [Edit(QUESTION, "jane doe"), Edit(QUESTION, "john smith")], policy="keep_both"
    )
    run_memory_command(memory, args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1.00  same question"
    assert lines[1].startswith(f"  {first.edit_id[:8]}  active")
    assert lines[1].endswith(f"{QUESTION} => jane doe")
    assert lines[2].startswith(f"  {second.edit_id[:8]}")
    assert lines[2].endswith("john smith")
    assert lines[3] == "1 pair(s) in namespace default; `recall forget ID` retracts the wrong one"
