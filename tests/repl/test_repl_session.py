"""Scripted REPL sessions over FakeMemory: every command, errors as one line, plain output without escapes."""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
from repl_fake_memory import BASE_ANSWER, FakeMemory
from rich.console import Console

from recall.errors import StoreLockedError
from recall.repl.commands import Output, RichOutput
from recall.repl.entry import add_repl_arguments, run_repl_command
from recall.repl.session import Repl
from recall.results import Retrieval

CEO_Q = "Who is the CEO of Zorblax Industries?"
CEO_EDIT = f":edit {CEO_Q} => Marta Quinlan"
PARAPHRASE = "Who is the Zorblax Industries CEO?"
FIRST_ID = "1a2babca"  # FakeMemory's first edit id, shortened to 8


def run_lines(lines: Iterable[str], memory: FakeMemory | None = None, *, rich: bool = False) -> str:
    memory = memory if memory is not None else FakeMemory()
    buffer = io.StringIO()
    out = RichOutput(Console(file=buffer, force_terminal=True, width=120)) if rich else Output(buffer)
    feed = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    assert Repl(memory, out, read_line=read).run() == 0
    return buffer.getvalue()


def test_edit_ask_why_forget_ask() -> None:
    memory = FakeMemory()
    text = run_lines(
        [CEO_Q, CEO_EDIT, CEO_Q, PARAPHRASE, ":why", f":forget {FIRST_ID[:4]}", CEO_Q, ":why"], memory
    )
    lines = text.splitlines()
    assert lines[0] == BASE_ANSWER
    assert lines[1] == f"added {FIRST_ID}  {CEO_Q} => Marta Quinlan"
    assert lines[2] == f"Marta Quinlan.  [edit {FIRST_ID}]"
    assert lines[3] == f"Marta Quinlan.  [edit {FIRST_ID}]"  # paraphrase
    why = text.split("why: ")[1]
    assert PARAPHRASE in why
    assert re.search(rf"0\s+{FIRST_ID}\s+0\.\d{{3}}\s+yes\s+{re.escape(CEO_Q)} => Marta Quinlan", why)
    assert "threshold: 0.500" in why
    assert f"sentinel:  fixed: admitted 1 of 1 hits: the answer used {FIRST_ID}" in why
    assert "injected:  (the text below, verbatim)" in why
    assert "    [New fact] Who is the CEO of Zorblax Industries? Marta Quinlan" in why
    assert f"forgot {FIRST_ID}  {CEO_Q} => Marta Quinlan" in text
    after = text.split("forgot ")[1].splitlines()
    assert after[1] == BASE_ANSWER
    assert "admitted nothing: the base model answered, nothing injected" in text.split("why: ")[2]
    assert "injected:  (nothing)" in text.split("why: ")[2]
    assert memory.find(FIRST_ID).status == "retracted"


class DecliningMemory(FakeMemory):
    """A memory whose backend review declines every hit the gate admits."""

    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        gated = super().retrieve(query, namespace)
        return dataclasses.replace(gated, admitted=(), declined=gated.admitted)


def test_why_lists_an_edit_the_review_declined() -> None:
    text = run_lines([CEO_EDIT, PARAPHRASE, ":why"], DecliningMemory())
    assert text.splitlines()[1] == BASE_ANSWER
    why = text.split("why: ")[1]
    assert re.search(rf"0\s+{FIRST_ID}\s+0\.\d{{3}}\s+declined\s+{re.escape(CEO_Q)}", why)
    assert (
        f"admitted nothing: the base model answered, nothing injected; the model declined {FIRST_ID}" in why
    )


class OverridingMemory(FakeMemory):
    """A memory whose gate found a newer edit of the same fact for every admitted one."""

    def retrieve(self, query: str, namespace: str = "default") -> Retrieval:
        gated = super().retrieve(query, namespace)
        return dataclasses.replace(gated, admitted=(), overridden=gated.admitted)


def test_why_lists_an_edit_a_newer_one_overrode() -> None:
    text = run_lines([CEO_EDIT, PARAPHRASE, ":why"], OverridingMemory())
    why = text.split("why: ")[1]
    assert re.search(rf"0\s+{FIRST_ID}\s+0\.\d{{3}}\s+overridden\s+{re.escape(CEO_Q)}", why)
    assert f"{FIRST_ID} overridden by a newer edit of the same fact" in why


def test_why_before_any_answer() -> None:
    assert run_lines([":why"]).strip() == "nothing to explain yet: ask a question first"


def test_supersede_and_history_shows_both() -> None:
    text = run_lines(
        [CEO_EDIT, f":edit {CEO_Q} => Ruth Okafor", CEO_Q, ":history 1a2c", ":history 1a2b", ":list"]
    )
    assert "added 1a2cabca  Who is the CEO of Zorblax Industries? => Ruth Okafor" in text
    assert "  supersedes 1a2babca  Who is the CEO of Zorblax Industries? => Marta Quinlan" in text
    assert "Ruth Okafor.  [edit 1a2cabca]" in text
    for history in text.split("1 active edit in namespace")[0].split("id        status")[1:3]:
        rows = [row for row in history.splitlines() if re.match(r"1a2[bc]", row)]
        assert [row.split()[:3] for row in rows] == [
            ["1a2babca", "superseded", "add"],
            ["1a2babca", "superseded", "supersede"],
            ["1a2cabca", "active", "add"],
        ]
        assert "(1a2cabca)" in rows[1]
    listing = text.split("1 active edit in namespace default")[1]
    assert "Ruth Okafor" in listing
    assert "Marta Quinlan" not in listing


def test_restore_brings_back_a_superseded_edit_beside_its_successor() -> None:
    text = run_lines(
        [CEO_EDIT, f":edit {CEO_Q} => Ruth Okafor", ":restore 1a2b", ":restore 1a2b", ":list", CEO_Q]
    )
    assert "supersedes 1a2babca  Who is the CEO of Zorblax Industries? => Marta Quinlan (:restore" in text
    assert "restored 1a2babca  Who is the CEO of Zorblax Industries? => Marta Quinlan" in text
    assert "conflicts with 1a2cabca  Who is the CEO of Zorblax Industries? => Ruth Okafor (both kept)" in text
    assert "edit 1a2babca is active: nothing to restore" in text
    assert "2 active edits in namespace default" in text


def test_restore_needs_an_id_prefix() -> None:
    text = run_lines([":restore", ":restore xyz"])
    assert "missing edit id" in text
    assert "'xyz' is not an edit id prefix" in text


def test_a_close_edit_with_another_answer_is_reported_and_kept() -> None:
    memory = FakeMemory()
    text = run_lines(
        [CEO_EDIT, ":edit Who is the Zorblax Industries chief executive? => Ruth Okafor"], memory
    )
    assert (
        "similar to 1a2babca  Who is the CEO of Zorblax Industries? => Marta Quinlan (0.56, both kept)"
        in text
    )
    assert [r.status for r in memory.records.values()] == ["active", "active"]


def test_conflicts_lists_close_edits_left_side_by_side() -> None:
    memory = FakeMemory()
    chief = ":edit Who is the Zorblax Industries chief executive? => Ruth Okafor"
    text = run_lines(
        [":conflicts", CEO_EDIT, chief, ":edit What colour is the sky? => green", ":conflicts"], memory
    )
    assert "no conflicting edits in namespace default" in text
    table = text.split("1 pair in namespace default, both active")[1]
    assert re.search(
        rf"0\.56\s+similar\s+{FIRST_ID}\s+{re.escape(CEO_Q)} => Marta Quinlan"
        r"\s+1a2cabca\s+Who is the Zorblax",
        table,
    )
    assert ":forget <id> retracts the wrong one of a pair" in table
    assert "no conflicting edits in all namespaces" in run_lines([":conflicts *"])
    assert "'no!such' is not a namespace name" in run_lines([":conflicts no!such"])


def test_diff_shows_both_answers() -> None:
    text = run_lines([CEO_EDIT, f":diff {CEO_Q}", ":diff What is the capital of France?"])
    assert f"with memory:    Marta Quinlan.  [edit {FIRST_ID}]" in text
    assert f"without memory: {BASE_ANSWER}" in text
    assert f"with memory:    {BASE_ANSWER}  (no edit used)" in text


def test_diff_asks_with_and_without_memory() -> None:
    memory = FakeMemory()
    run_lines([":diff Q?"], memory)
    assert memory.asked == [("Q?", "default", True), ("Q?", "default", False)]


def test_namespaces_scope_edits_and_listing() -> None:
    memory = FakeMemory()
    text = run_lines(
        [":ns work", CEO_EDIT, ":ns default", CEO_Q, ":list", ":list work", ":list *", ":ns"], memory
    )
    assert "namespace work (0 active edits)" in text
    assert "added 1a2babca  Who is the CEO of Zorblax Industries? => Marta Quinlan  (namespace work)" in text
    assert "namespace default (0 active edits)" in text
    assert f"\n{BASE_ANSWER}\n" in text  # the edit lives in `work`, not in `default`
    assert "no active edits in namespace default" in text
    assert "1 active edit in namespace work" in text
    assert "1 active edit in all namespaces" in text
    assert "namespace default; namespaces: default, work" in text
    assert memory.records["1a2b" + "abc" * 9 + "d"].namespace == "work"


def test_stats_backend_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "recall.repl.session._registered_backends", lambda: ["lte", "fake"]
    )  # no torch import here
    text = run_lines([CEO_EDIT, CEO_Q, ":stats", ":backend", ":help", ":help why"])
    assert "edits:       1 active (1 in default)" in text
    assert "model:       fake-lm" in text
    assert "encoder:     fake-words" in text
    assert "backend:     fake (sentinel fixed)" in text
    assert "last answer: 42 ms" in text
    assert re.search(r"\nsentinel:\s+fixed\n", text)
    assert re.search(r"\navailable:\s+lte, fake \(start with: recall repl --backend NAME\)\n", text)
    assert "Type a question to ask it, or a command:" in text
    assert ":edit <prompt> => <target>:" in text
    assert text.rstrip().splitlines()[-1].startswith(":why:")


def test_guided_edit_form() -> None:
    memory = FakeMemory()
    text = run_lines([":edit", CEO_Q, "Marta Quinlan", "Zorblax Industries", ":edit", "", CEO_Q], memory)
    assert f"added {FIRST_ID}  {CEO_Q} => Marta Quinlan" in text
    assert "edit cancelled: a prompt and a target are both needed" in text
    record = memory.list()[0]
    assert record.subject == "Zorblax Industries"
    assert text.rstrip().endswith(f"[edit {FIRST_ID}]")


def test_guided_edit_cancelled_by_end_of_input() -> None:
    memory = FakeMemory()
    assert "edit cancelled" in run_lines([":edit", "a prompt"], memory)
    assert memory.records == {}


def test_unknown_and_malformed_lines_give_one_line_hints() -> None:
    text = run_lines(
        [":frob", ":edit no arrow", ":forget 12", ":forget 9999", ":history ffff", "still alive?"]
    )
    lines = text.splitlines()
    assert lines == [
        "unknown command ':frob'; type :help for the list",
        "missing '=>' between prompt and target; usage: :edit <prompt> => <target>",
        "'12' is not an edit id prefix (at least 4 hex characters); usage: :forget <id-prefix>",
        "error: no edit id starts with '9999'",
        "error: no edit id starts with 'ffff'",
        BASE_ANSWER,
    ]


def test_ambiguous_prefix_is_one_line_and_longer_prefix_works() -> None:
    memory = FakeMemory(ids=["abcd1111" + "0" * 24, "abcd2222" + "0" * 24])
    text = run_lines([":edit p1 one => t1", ":edit other two => t2", ":forget abcd", ":forget abcd2"], memory)
    assert "error: edit id prefix 'abcd' is ambiguous (2 edits); type more characters" in text
    assert "forgot abcd2222  other two => t2" in text
    assert "edit abcd2222 is already forgotten" in run_lines([":forget abcd2"], memory)


def test_store_errors_and_internal_errors_do_not_stop_the_loop() -> None:
    memory = FakeMemory()
    memory.fail_next = StoreLockedError("memory is locked by pid 4242")
    text = run_lines(["q1", "q2"], memory)
    assert text.splitlines() == ["error: memory is locked by pid 4242", BASE_ANSWER]
    memory.fail_next = RuntimeError("boom\nsecond line")
    text = run_lines(["q1", "q2"], memory)
    assert text.splitlines() == ["internal error: RuntimeError: boom second line", BASE_ANSWER]
    assert "Traceback" not in text


def test_ctrl_c_during_generation_cancels_and_continues() -> None:
    memory = FakeMemory()
    memory.fail_next = KeyboardInterrupt()
    assert run_lines(["q1", "q2"], memory).splitlines() == ["(cancelled)", BASE_ANSWER]


def test_quit_stops_reading() -> None:
    memory = FakeMemory()
    assert run_lines([":quit", "never asked"], memory) == ""
    assert memory.asked == []


SCRIPT = [
    CEO_EDIT,
    CEO_Q,
    ":why",
    ":list",
    ":conflicts",
    ":history 1a2b",
    f":diff {CEO_Q}",
    ":stats",
    ":backend",
    ":help",
    ":frob",
]


def test_plain_output_has_no_escape_codes_and_control_chars_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("recall.repl.session._registered_backends", lambda: ["lte"])
    memory = FakeMemory()
    text = run_lines([":edit Colour? => \x1b[31mred\x1b[0m\x07", "Colour?", *SCRIPT], memory)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "[31mred[0m" in text  # what is left of the escape is visible, not interpreted


def test_rich_output_renders_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recall.repl.session._registered_backends", lambda: ["lte"])
    text = run_lines(SCRIPT, rich=True)
    assert "\x1b[" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "Marta Quinlan.  [edit 1a2babca]" in plain
    assert "with memory [edit 1a2babca]" in plain
    assert "unknown command ':frob'" in plain
    assert "Traceback" not in plain


def test_rich_output_does_not_interpret_markup_in_user_text() -> None:
    plain = re.sub(
        r"\x1b\[[0-9;]*m", "", run_lines([":edit [bold]x[/bold] => [red]y", "[bold]x[/bold]"], rich=True)
    )
    assert "[bold]x[/bold] => [red]y" in plain
    assert "[red]y." in plain


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_repl_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_repl_command_scripted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join([CEO_EDIT, CEO_Q, ":ns"]) + "\n"))
    memories: list[FakeMemory] = []
    opened: list[tuple[Path, str | None, str | None]] = []

    def open_memory(path: Path, model: str | None, backend: str | None) -> FakeMemory:
        opened.append((path, model, backend))
        memories.append(FakeMemory())
        return memories[-1]

    status = run_repl_command(
        _args("--memory", str(tmp_path), "--model", "m", "--backend", "lte", "--namespace", "team"),
        open_memory,
    )
    captured = capsys.readouterr()
    assert status == 0
    assert opened == [(tmp_path, "m", "lte")]
    assert memories[0].closed
    assert captured.out.splitlines() == [
        f"added {FIRST_ID}  {CEO_Q} => Marta Quinlan  (namespace team)",
        f"Marta Quinlan.  [edit {FIRST_ID}]",
        "namespace team; namespaces: team",
    ]
    assert captured.err == ""
    assert "\x1b" not in captured.out


def test_run_repl_command_default_memory_says_where(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    opened: list[Path] = []
    status = run_repl_command(_args(), lambda path, model, backend: opened.append(path) or FakeMemory())  # type: ignore[func-returns-value]
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out == ""
    assert (
        captured.err == f"recall repl: using the default memory at {opened[0]} (--memory DIR picks another)\n"
    )
    assert opened[0].name == "memory"


def test_run_repl_command_open_failure_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    def locked(path: Path, model: str | None, backend: str | None) -> FakeMemory:
        raise StoreLockedError(f"{path} is in use by another process (pid 4242)")

    assert run_repl_command(_args("--memory", str(tmp_path)), locked) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"recall repl: cannot open the memory at {tmp_path}: {tmp_path}")
    assert err.endswith(" is in use by another process (pid 4242)\n")


def test_run_repl_command_rejects_bad_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_repl_command(_args("--namespace", "two words"), lambda p, m, b: FakeMemory()) == 2
    assert "is not a namespace name" in capsys.readouterr().err


def test_guided_edit_asks_for_the_subject_a_weight_editor_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = FakeMemory()
    monkeypatch.setattr(memory, "info", lambda: {**FakeMemory().info(), "backend": "rome"})
    labels: list[str] = []
    feed = iter([":edit", CEO_Q, "Marta Quinlan", ""])

    def read(prompt: str) -> str:
        labels.append(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    buffer = io.StringIO()
    assert Repl(memory, Output(buffer), read_line=read).run() == 0
    assert "subject (required: the entity, as written in the prompt)> " in labels
    assert "edit cancelled: the rome backend needs the subject the fact is about" in buffer.getvalue()
    assert memory.records == {}
