"""Issue #33, what a hostile or careless user tried through the public API: each numbered item of the
issue has its test here (the real-model ones are at the end of test_core_real.py)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OpenMemory
from safetensors import safe_open

from memory_store import (
    CorruptStoreError,
    EditNotFoundError,
    MemoryNotFoundError,
    MemoryStore,
    ReadOnlyStoreError,
    StorageError,
    StoreLockedError,
)
from recall import build
from recall.backends.state_files import read_state
from recall.backends.weight_editor import WeightEditor
from recall.cli.main import main
from recall.cli.memory import run_memory_command
from recall.config import RecallConfig, load_config
from recall.display import fact
from recall.errors import (
    ConfigError,
    ConflictError,
    InvalidEditError,
    InvalidQueryError,
    MemoryExistsError,
    RecallError,
)
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.repl.commands import Output, parse_line
from recall.repl.session import Repl
from recall.results import Edit
from recall.retrieval.encoder import HashingEncoder
from recall.retrieval.identifiers import identifiers, name_other_things
from recall.staging import staging_dir

MakeMemory = Callable[..., EditMemory]
BASE = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]

# Questions a sentence encoder scores as one (MiniLM: 0.953, 0.964, 0.979) that ask about other things.
APART = [
    ("What is the phone number of room 101?", "What is the phone number of room 102?"),
    ("Which department is on floor 3?", "Which department is on floor 4?"),
    ("What is the price of SKU-1234?", "What is the price of SKU-1235?"),
    ("Who is the CEO of Acme?", "Who is the CEO of Globex?"),
    ("Who sits in room 12 on floor 3?", "Who sits in room 3 on floor 12?"),
    ("What is code 1 2 3 1?", "What is code 1 2 3 2?"),
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
    assert identifiers("Who owns SKU-1234 in Acme's room 3.5?") == (("sku-1234", "3.5"), frozenset({"acme"}))


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
    run_memory_command(
        memory,
        argparse.Namespace(
            command="history", edit_id=added.edit_id[:8], namespace="default", every_namespace=False
        ),
    )
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


def test_12_a_mistyped_memory_path_is_an_error_not_an_empty_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "memroy"
    for argv in (["ask", "who is the ceo of acme ?"], ["list"], ["forget", "abcd1234"], ["conflicts"]):
        assert main([*argv, "--memory", str(missing)]) != 0
        assert "no memory at" in capsys.readouterr().err
    assert not missing.exists()


def test_12_ids_need_four_characters_and_stay_in_their_namespace(make_memory: MakeMemory) -> None:
    memory = make_memory()
    mine = memory.add("who is the ceo of acme ?", "jane doe", namespace="alice")
    with pytest.raises(InvalidEditError, match="at least 4 characters"):
        memory.find(mine.edit_id[:1])
    with pytest.raises(EditNotFoundError, match="namespace 'bob'"):
        memory.find(mine.edit_id[:8], "bob")
    for call in (memory.forget, memory.restore, memory.history, memory.get):
        with pytest.raises(EditNotFoundError):
            call(mine.edit_id, "bob")
    assert memory.find(mine.edit_id[:4], "alice").edit_id == mine.edit_id
    assert memory.forget(mine.edit_id, "alice").status == "retracted"
    assert memory.restore(mine.edit_id, "alice").record.status == "active"
    assert [e.kind for e in memory.history(mine.edit_id, "alice")] == ["add", "retract", "restore"]


def test_12_an_unknown_policy_is_an_error(make_memory: MakeMemory) -> None:
    memory = make_memory()
    with pytest.raises(ConfigError, match="policy expected one of"):
        memory.add("who is the ceo of acme ?", "jane doe", policy="overwrite")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy expected one of"):
        memory.add_many([("who is the ceo of acme ?", "jane doe")], policy="Supersede")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy expected one of"):
        memory.add("who is the ceo of acme ?", "jane doe", policy="")  # type: ignore[arg-type]
    assert memory.list() == []


def test_12_add_many_under_reject_is_all_or_nothing(make_memory: MakeMemory) -> None:
    memory = make_memory()
    old = memory.add("who is the ceo of acme ?", "jane doe")
    batch = [Edit("what is the capital of france ?", "paris"), Edit("who is the ceo of acme ?", "john smith")]
    with pytest.raises(ConflictError, match="nothing was added"):
        memory.add_many(batch, policy="reject")
    assert [r.edit_id for r in memory.list()] == [old.edit_id]
    twice = [Edit("who wrote the novel ?", "jane doe"), Edit("who wrote the novel ?", "john smith")]
    with pytest.raises(ConflictError):
        memory.add_many(twice, policy="reject")  # two of one question in the batch itself
    assert [r.edit_id for r in memory.list()] == [old.edit_id]


def test_12_add_many_under_supersede_is_undone_when_one_fails(
    make_memory: MakeMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = make_memory()
    old = memory.add("who is the ceo of acme ?", "jane doe")
    batch = [
        Edit("who is the ceo of acme ?", "john smith"),  # supersedes `old`
        Edit("what is the capital of france ?", "paris"),
        Edit("who wrote the novel ?", "marta quinlan"),
    ]
    calls = []
    real = memory.backend.edit

    def fail_third(records: object) -> None:
        calls.append(records)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third edit
        real(records)  # type: ignore[arg-type]

    monkeypatch.setattr(memory.backend, "edit", fail_third)
    with pytest.raises(KeyboardInterrupt):
        memory.add_many(batch)
    assert [r.edit_id for r in memory.list()] == [old.edit_id]  # as before the call
    assert memory.ask("who is the ceo of acme ?").used == (old.edit_id,)


def test_12_a_failed_close_still_unlocks_the_memory(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = EditMemory.create(tmp_path / "memory", tiny_config, lm=tiny_lm, encoder=HashingEncoder())

    def disk_full(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(memory.backend, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        memory.close()
    EditMemory.open(tmp_path / "memory", lm=tiny_lm).close()  # not StoreLockedError


def test_12_concurrent_adds_of_one_question_never_fail(make_memory: MakeMemory) -> None:
    memory = make_memory()
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            memory.add("who is the ceo of acme ?", ["jane doe", "john smith", "marta quinlan"][i % 3])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memory.list()) == 1  # each add superseded the one before
    assert len(memory.list(status=None)) == 24


def test_12_an_interrupted_writer_leaves_no_staging_folder_behind(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = tmp_path / f".smollm2-135m-{int(dead.stdout)}-abc"  # what a killed first load left
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"0" * 1000)
    mine = staging_dir(tmp_path, ".smollm2-135m-")
    assert not left.exists()
    assert mine.exists()
    staging_dir(tmp_path, ".smollm2-135m-")
    assert mine.exists()  # a running process's folder is never taken


def test_10_deleting_the_lock_file_lets_no_second_opener_in(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> None:
    with EditMemory.create(tmp_path / "memory", tiny_config, lm=tiny_lm, encoder=HashingEncoder()) as memory:
        (tmp_path / "memory" / "lock").unlink()
        with pytest.raises(StoreLockedError):
            EditMemory.open(tmp_path / "memory", lm=tiny_lm)
        code = "import sys; from memory_store import MemoryStore; MemoryStore.open(sys.argv[1])"
        other = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "memory")], capture_output=True, text=True
        )
        assert "StoreLockedError" in other.stderr
        memory.add("who is the ceo of acme ?", "jane doe")
    EditMemory.open(tmp_path / "memory", lm=tiny_lm).close()  # free again once closed


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_11_a_read_only_memory_is_listed_and_asked_without_writing_a_byte(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> None:
    path = tmp_path / "memory"
    with EditMemory.create(path, tiny_config, lm=tiny_lm, encoder=HashingEncoder()) as memory:
        kept = memory.add("who is the ceo of acme ?", "jane doe")
        memory.add("what is the capital of france ?", "lyon")
    before = _snapshot(path)
    with EditMemory.open(path, lm=tiny_lm, read_only=True) as memory:
        assert len(memory.list()) == 2
        assert memory.ask("who is the ceo of acme ?").used == (kept.edit_id,)
        assert [e.kind for e in memory.history(kept.edit_id)] == ["add"]
        assert memory.conflicts() == []
        for change in (
            lambda: memory.add("who wrote the novel ?", "john smith"),
            lambda: memory.add_many([("who wrote the novel ?", "john smith")]),
            lambda: memory.forget(kept.edit_id),
            lambda: memory.reset(),
        ):
            with pytest.raises(ReadOnlyStoreError):
                change()
        assert len(memory.list()) == 2
    assert _snapshot(path) == before  # not even the lock's pid


def test_11_read_only_reads_the_commits_a_killed_writer_left_in_its_log(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig
) -> None:
    memory = EditMemory.create(tmp_path / "memory", tiny_config, lm=tiny_lm, encoder=HashingEncoder())
    added = memory.add("who is the ceo of acme ?", "jane doe")
    shutil.copytree(tmp_path / "memory", tmp_path / "copy")  # as a kill would leave it: the log not merged
    memory.close()
    assert (tmp_path / "copy" / "edits.sqlite-wal").stat().st_size > 0
    with EditMemory.open(tmp_path / "copy", lm=tiny_lm, read_only=True) as copy:
        assert [r.edit_id for r in copy.list()] == [added.edit_id]


def test_11_the_cli_lists_a_memory_it_cannot_write(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "memory"
    config = load_config(backend="lte", overrides=[*BASE[:1], f"model.name={tiny_model_dir}", *BASE[2:]])
    with EditMemory.create(path, config, encoder=HashingEncoder()) as memory:
        memory.add("who is the ceo of acme ?", "jane doe")
    before = _snapshot(path)
    # The tests run as root, whom no permission stops: os.access stands in for read-only storage.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    assert main(["list", "--memory", str(path)]) == 0
    assert "jane doe" in capsys.readouterr().out
    assert main(["edit", "who wrote the novel ?", "john smith", "--memory", str(path)]) != 0
    assert _snapshot(path) == before


def test_8_swapped_recipe_prompt_cache_entries_are_remade(open_memory: OpenMemory) -> None:
    from safetensors.torch import load_file, save_file

    from recall.backends.recipe.backend import PROMPTS_FILE, RecipeBackend

    memory = open_memory("recipe", "memory")
    first = memory.add("who is the ceo of acme ?", "jane doe")
    second = memory.add("what is the capital of france ?", "lyon")
    memory.close()
    file = memory.store.path / "backend" / PROMPTS_FILE
    prompts = load_file(str(file))
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
    a, b = first.edit_id, second.edit_id
    assert not torch.equal(prompts[a], prompts[b])
    save_file({a: prompts[b], b: prompts[a]}, str(file), metadata=metadata)  # the ids keep their places
    again = open_memory("recipe", "memory", reopen=True)
    backend = again.backend
    assert isinstance(backend, RecipeBackend)
    for edit_id, swapped in ((a, prompts[b]), (b, prompts[a])):
        fresh = backend._make_prompts([again.get(edit_id)])[0]  # a batch of one: float noise apart
        assert torch.allclose(backend._prompts[edit_id], fresh, atol=1e-5)
        current = backend._prompts[edit_id]
        assert current.shape != swapped.shape or not torch.allclose(current, swapped, atol=1e-5)


@pytest.mark.parametrize(
    ("artifact", "member"),
    [
        ("relevance-smollm2-135m", "relevance.safetensors"),
        ("lte-smollm2-135m", "adapter_model.safetensors"),
        ("recipe-smollm2-135m", "recipe.safetensors"),
    ],
)
def test_8_a_damaged_artifact_raises_naming_the_file(
    tmp_path: Path, tiny_lm: LanguageModel, artifact: str, member: str
) -> None:
    from recall.artifacts import BUNDLED_DIR, ArtifactError
    from recall.backends.recipe.files import load_knowledge
    from recall.backends.review import load_probe
    from recall.lm.lora import load_adapted

    copy = tmp_path / artifact
    shutil.copytree(BUNDLED_DIR / artifact, copy)
    data = bytearray((copy / member).read_bytes())
    data[-10] ^= 0xFF  # one flipped byte: the file still loads
    (copy / member).write_bytes(bytes(data))
    loads: dict[str, Callable[[], object]] = {
        "relevance": lambda: load_probe(str(copy), tiny_lm),
        "lte": lambda: load_adapted(tiny_lm, str(copy)),
        "recipe": lambda: load_knowledge(str(copy), tiny_lm),
    }
    with pytest.raises(ArtifactError, match=f"{member} is not the file its training.json records"):
        loads[artifact.split("-")[0]]()


def _flip_last_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01  # a tensor's last byte: the file still loads, with another value
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damaged", ["snapshot", "delta"])
def test_8_a_damaged_weight_editor_file_is_recomputed_not_used(
    open_memory: OpenMemory, damaged: str, tmp_path: Path
) -> None:
    memory = open_memory("rome", "memory")
    memory.add("who is the ceo of acme ?", "jane doe", subject="acme")
    memory.add("what is the capital of france ?", "lyon", subject="france")
    memory.close()
    folder = memory.store.path / "backend"
    snapshot = folder / "rome-weights.safetensors"
    if damaged == "snapshot":
        _flip_last_byte(snapshot)
    else:
        snapshot.unlink()  # so that the deltas are read
        _flip_last_byte(sorted((folder / "rome").glob("*.safetensors"))[0])
    again = open_memory("rome", "memory", reopen=True)
    fresh = open_memory("rome", "fresh")
    fresh.add("who is the ceo of acme ?", "jane doe", subject="acme")
    fresh.add("what is the capital of france ?", "lyon", subject="france")
    assert isinstance(again.backend, WeightEditor)
    assert isinstance(fresh.backend, WeightEditor)
    for path, weight in again.backend.weights.items():
        assert torch.allclose(weight, fresh.backend.weights[path], atol=1e-6), path


def test_8_a_damaged_grace_entry_is_retrained_not_used(open_memory: OpenMemory) -> None:
    memory = open_memory("grace", "memory")
    added = memory.add("who is the ceo of acme ?", "jane doe")
    memory.close()
    entry = next((memory.store.path / "backend").rglob(f"{added.edit_id}.safetensors"))
    _flip_last_byte(entry)
    assert read_state(entry) is None
    again = open_memory("grace", "memory", reopen=True)
    assert read_state(entry) is not None  # written again by the retraining
    assert added.edit_id in again.ask("who is the ceo of acme ?", max_new_tokens=2).used


def test_9_a_full_disk_is_a_storage_error_and_changes_nothing(make_memory: MakeMemory) -> None:
    memory = make_memory()
    kept = memory.add("who is the ceo of acme ?", "jane doe")
    writer = memory.store._db._writer  # SQLite's own limit stands in for a full disk: SQLITE_FULL
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    big = "lyon " * 1500  # needs new pages
    with pytest.raises(StorageError, match=r"could not be written .*full.*nothing was changed"):
        memory.add("what is the capital of france ?", big)
    with pytest.raises(StorageError):
        memory.add_many([("what is the capital of france ?", big), ("who wrote the novel ?", big)])
    assert [r.edit_id for r in memory.list()] == [kept.edit_id]
    assert memory.ask("what is the capital of france ?", max_new_tokens=2).used == ()
    writer.execute(f"PRAGMA max_page_count = {pages * 100}")  # space freed
    assert memory.add("what is the capital of france ?", big).record.target == big.strip()


def test_9_a_backend_that_cannot_write_its_files_is_a_storage_error(
    open_memory: OpenMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = open_memory("rome", "memory")
    kept = memory.add("who is the ceo of acme ?", "jane doe", subject="acme")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("recall.backends.weight_editor.write_state", disk_full)
    with pytest.raises(StorageError, match="rome backend could not write its files"):
        memory.add("what is the capital of france ?", "lyon", subject="france")
    assert [r.edit_id for r in memory.list()] == [kept.edit_id]
    assert isinstance(memory.backend, WeightEditor)
    assert list(memory.backend.records) == [kept.edit_id]


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        ({"config": "x"}, CorruptStoreError),
        ({"config": None}, CorruptStoreError),
        ({"config": {"backend": "x"}}, ConfigError),
        ({"config": {"retrieval": {"top_k": -1}}}, ConfigError),
        ({"config": {"backend": {"name": "nope"}}}, ConfigError),
    ],
)
def test_9_a_damaged_manifest_config_is_a_typed_error(
    tmp_path: Path, tiny_lm: LanguageModel, tiny_config: RecallConfig, damage: dict[str, object], error: type
) -> None:
    path = tmp_path / "memory"
    EditMemory.create(path, tiny_config, lm=tiny_lm, encoder=HashingEncoder()).close()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["extra"].update(damage)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(error):
        EditMemory.open(path, lm=tiny_lm)
    MemoryStore.open(path).close()  # the failed open left nothing locked
