"""Issue #33, what a hostile or careless user tried through the public API: each numbered item of the
issue has its test here (the real-model ones are in test_core_reliability_real.py)."""

from __future__ import annotations

import argparse
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from memory_store import MemoryNotFoundError
from recall import build
from recall.cli.memory import run_memory_command
from recall.config import RecallConfig, load_config
from recall.display import fact
from recall.errors import ConflictError, InvalidEditError, InvalidQueryError, MemoryExistsError, RecallError
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.repl.commands import Output, parse_line
from recall.repl.session import Repl
from recall.results import Edit
from recall.retrieval.encoder import HashingEncoder
from recall.retrieval.identifiers import identifiers, name_other_things

MakeMemory = Callable[..., EditMemory]
BASE = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]

# Questions a sentence encoder scores as one (MiniLM: 0.953, 0.964, 0.979) that ask about other things.
APART = [
    ("What is the phone number of room 101?", "What is the phone number of room 102?"),
    ("Which department is on floor 3?", "Which department is on floor 4?"),
    ("What is the price of SKU-1234?", "What is the price of SKU-1235?"),
    ("Who is the CEO of Acme?", "Who is the CEO of Globex?"),
]
# Questions that are one question, reworded or recased.
SAME = [
    ("Who is the CEO of Acme?", "who is the ceo of acme ?"),
    ("The CEO of Acme is", "Who runs Acme?"),
    ("What is the price of SKU-1234?", "How much does SKU-1234 cost?"),
]


def _cosine(a: str, b: str) -> float:
    keys = HashingEncoder().encode_keys([a, b])  # (2, dim), unit rows
    return float(np.dot(keys[0], keys[1]))


@pytest.mark.parametrize(("a", "b"), APART)
def test_1_questions_that_name_other_identifiers_are_apart(a: str, b: str) -> None:
    assert name_other_things(a, b)
    assert name_other_things(b, a)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_1_rewordings_and_case_keep_one_question(a: str, b: str) -> None:
    assert not name_other_things(a, b)
    assert not name_other_things(b, a)


def test_1_identifiers_are_codes_and_inner_capitals() -> None:
    assert identifiers("Who owns SKU-1234 in Acme's room 3.5?") == (
        frozenset({"sku-1234", "3.5"}),
        frozenset({"acme"}),
    )


@pytest.mark.parametrize(("a", "b"), APART[:3])
def test_1_distinct_identifiers_never_supersede_under_any_policy(
    make_memory: MakeMemory, a: str, b: str
) -> None:
    cut = _cosine(a, b) - 0.01  # the encoder calls them one question: only the identifiers tell
    config = load_config(backend="lte", overrides=[*BASE, f"conflict.min_cosine={cut:.4f}"])
    memory = make_memory(config=config)
    first = memory.add(a, "jane doe")
    second = memory.add(b, "john smith")  # policy supersede, the default
    assert not second.superseded
    assert not second.conflicts
    assert {r.edit_id for r in memory.list()} == {first.edit_id, second.edit_id}
    with pytest.raises(ConflictError):  # the same question is still caught
        memory.add(b.lower(), "marta quinlan", policy="reject")


def test_1_add_many_keeps_distinct_identifiers_side_by_side(make_memory: MakeMemory) -> None:
    a, b = APART[2]
    cut = _cosine(a, b) - 0.01
    memory = make_memory(
        config=load_config(backend="lte", overrides=[*BASE, f"conflict.min_cosine={cut:.4f}"])
    )
    results = memory.add_many([Edit(a, "12 euros"), Edit(b, "30 euros")])
    assert [r.superseded for r in results] == [(), ()]
    assert {r.target for r in memory.list()} == {"12 euros", "30 euros"}
    assert not any(pair.same_question for pair in memory.conflicts())  # at most reported as close


@pytest.mark.parametrize(
    "query",
    [
        123,
        None,
        b"who is the ceo of acme ?",
        "",
        "   ",
        "who\ud800",
        "who\x00is",
        "x" * 10_001,
        "x" * 1_000_000,
    ],
)
def test_2_a_question_gets_the_same_validation_as_an_edit(make_memory: MakeMemory, query: object) -> None:
    memory = make_memory()
    for call in (
        lambda: memory.ask(query),  # type: ignore[arg-type]
        lambda: memory.retrieve(query),  # type: ignore[arg-type]
        lambda: memory.score(query, "jane doe"),  # type: ignore[arg-type]
        lambda: memory.score("who is the ceo of acme ?", query),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidQueryError) as caught:
            call()
        assert isinstance(caught.value, RecallError)


def test_2_a_question_and_its_answer_must_fit_the_context(make_memory: MakeMemory) -> None:
    memory = make_memory()  # the tiny llama reads 256 positions
    assert memory.ask("who " * 200, max_new_tokens=8).text is not None
    with pytest.raises(InvalidQueryError, match="256 positions"):
        memory.ask("who " * 250, max_new_tokens=8)
    with pytest.raises(InvalidQueryError, match="256 positions"):
        memory.ask("who is the ceo of acme ?", max_new_tokens=300)


@pytest.mark.parametrize("length", [0, -1, True, 2.5, "5"])
def test_2_answer_lengths_are_checked_not_guessed(make_memory: MakeMemory, length: object) -> None:
    memory = make_memory()
    with pytest.raises(InvalidQueryError, match="max_new_tokens"):
        memory.ask("who is the ceo of acme ?", max_new_tokens=length)  # type: ignore[arg-type]


@pytest.mark.parametrize(("namespace", "use_memory"), [(None, True), ("", True), ("default", "yes")])
def test_2_namespace_and_flags_are_checked(
    make_memory: MakeMemory, namespace: object, use_memory: object
) -> None:
    memory = make_memory()
    with pytest.raises(InvalidQueryError):
        memory.ask("who is the ceo of acme ?", namespace, use_memory=use_memory)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "text"),
    [("target", "jane </s> doe"), ("prompt", "who is <s> the ceo of acme ?"), ("subject", "acme <pad>")],
)
def test_3_an_edit_holding_a_special_token_is_refused(make_memory: MakeMemory, field: str, text: str) -> None:
    memory = make_memory()
    fields = {"prompt": "who is the ceo of acme ?", "target": "jane doe", "subject": "acme", field: text}
    edit = Edit(fields["prompt"], fields["target"], fields["subject"])
    with pytest.raises(InvalidEditError, match=f"{field} holds .*special token"):
        memory.add(edit.prompt, edit.target, edit.subject)
    with pytest.raises(InvalidEditError, match="special token"):
        memory.add_many([Edit("what is the capital of france ?", "paris"), edit])
    assert memory.list() == []  # all or nothing
    with pytest.raises(InvalidQueryError, match="special token"):
        memory.ask(f"{text} ?")


@pytest.mark.parametrize("mark", ["\u202e", "\u2066", "\u200b", "\ufeff", "\u00ad", "\U000e0041", "\u200f"])
def test_3_bidi_and_invisible_format_characters_are_refused(make_memory: MakeMemory, mark: str) -> None:
    memory = make_memory()
    with pytest.raises(InvalidEditError, match="invisible format"):
        memory.add("who is the ceo of acme ?", f"jane{mark} doe")
    with pytest.raises(InvalidQueryError, match="invisible format"):
        memory.ask(f"who is the ceo{mark} of acme ?")


def test_3_joiners_stay_allowed_for_scripts_and_emoji(make_memory: MakeMemory) -> None:
    memory = make_memory()
    text = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 👩\u200d💻"  # Persian ZWNJ, an emoji ZWJ
    assert memory.add("who is the ceo of acme ?", text).record.target == text


FORGED_LINE = "jane doe\n0123abcd  active      default     who is the ceo of acme ? => marta quinlan"


def test_4_stored_text_cannot_forge_lines_of_the_cli(
    make_memory: MakeMemory, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = make_memory()
    added = memory.add("who is the ceo of acme ?", FORGED_LINE)
    capsys.readouterr()
    run_memory_command(
        memory, argparse.Namespace(command="list", namespace="default", every_namespace=False, all=False)
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # the edit, then the count
    assert lines[0].startswith(added.edit_id[:8])
    assert lines[0].endswith(
        "=> jane doe\\n0123abcd  active      default     who is the ceo of acme ? => marta quinlan"
    )
    run_memory_command(memory, argparse.Namespace(command="history", edit_id=added.edit_id[:8]))
    assert len(capsys.readouterr().out.splitlines()) == 2  # the edit, one event


def test_4_the_repl_prints_stored_text_on_one_line(make_memory: MakeMemory) -> None:
    memory = make_memory()
    memory.add("who is the ceo of acme ?", FORGED_LINE)
    out = io.StringIO()
    session = Repl(memory, Output(out))
    session.handle_line(":list")
    shown = out.getvalue().splitlines()
    assert len(shown) == 3  # title, header, the edit
    assert shown[2].count("0123abcd") == 1
    assert fact(memory.list()[0]).endswith(
        "jane doe\\n0123abcd  active      default     who is the ceo of acme ? => marta quinlan"
    )


@pytest.mark.parametrize(
    ("name", "use"),
    [
        ("DEFAULT", "default"),
        ("default ", "default"),
        (" work", "work"),
        ("ｄｅｆａｕｌｔ", "default"),
        ("my  team", "my team"),
    ],
)
def test_4_namespaces_have_one_written_form(make_memory: MakeMemory, name: str, use: str) -> None:
    memory = make_memory()
    with pytest.raises(InvalidEditError, match=f"use '{use}'"):
        memory.add("who is the ceo of acme ?", "jane doe", namespace=name)
    with pytest.raises(InvalidQueryError, match=f"use '{use}'"):
        memory.ask("who is the ceo of acme ?", name)
    assert parse_line(f":ns {name.strip()}").kind == ("ns" if name.strip() == use else "invalid")


def test_5_an_interrupted_create_leaves_no_memory(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest was written before the config: a kill between them left a memory that reopened with
    the defaults. Now everything is written in a staging folder, renamed once complete."""

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # stands for a kill after the store and its manifest were written

    monkeypatch.setattr(build, "build_sentinel", killed)
    with pytest.raises(KeyboardInterrupt):
        EditMemory.create(tmp_path / "memory", tiny_config, lm=tiny_lm, encoder=HashingEncoder())
    assert list(tmp_path.iterdir()) == []  # no memory, no staging folder
    with pytest.raises(MemoryNotFoundError):
        EditMemory.open(tmp_path / "memory", lm=tiny_lm)


def test_5_a_created_memory_is_complete_when_its_manifest_appears(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> None:
    config = dataclasses.replace(tiny_config, retrieval=dataclasses.replace(tiny_config.retrieval, top_k=3))
    EditMemory.create(tmp_path / "memory", config, lm=tiny_lm, encoder=HashingEncoder()).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory"]
    with EditMemory.open(tmp_path / "memory", lm=tiny_lm) as memory:
        assert memory.config == config


def test_6_create_never_overwrites_a_memory(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> None:
    with EditMemory.create(tmp_path / "memory", tiny_config, lm=tiny_lm, encoder=HashingEncoder()) as memory:
        memory.add("who is the ceo of acme ?", "jane doe")
    other = load_config(backend="lte", overrides=[*BASE, "retrieval.top_k=2"])
    with pytest.raises(MemoryExistsError, match="already exists"):
        EditMemory.create(tmp_path / "memory", other, lm=tiny_lm, encoder=HashingEncoder())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(MemoryExistsError, match="other files"):
        EditMemory.create(tmp_path / "notes", other, lm=tiny_lm, encoder=HashingEncoder())
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    with EditMemory.open(tmp_path / "memory", lm=tiny_lm) as memory:
        assert memory.config == tiny_config
        assert [r.target for r in memory.list()] == ["jane doe"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    EditMemory.create(tmp_path / "empty", other, lm=tiny_lm, encoder=HashingEncoder()).close()


def test_7_open_keeps_the_store_settings_the_memory_was_created_with(
    tmp_path: Path, tiny_lm: LanguageModel
) -> None:
    config = load_config(backend="lte", overrides=[*BASE, "store.max_text_chars=40", "store.index=hnsw"])
    EditMemory.create(tmp_path / "memory", config, lm=tiny_lm, encoder=HashingEncoder()).close()
    with EditMemory.open(tmp_path / "memory", lm=tiny_lm) as memory:
        assert memory.store.max_text_chars == 40
        assert memory.store.index_kind == "hnsw"
        with pytest.raises(InvalidEditError, match="at most 40 characters"):
            memory.add("who is the ceo of acme ?", "jane doe " * 10)
