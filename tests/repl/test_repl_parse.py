"""parse_line: every command, its aliases, and malformed input (one-line hints, never an exception); and what
the completer offers after each command."""

from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from recall.repl.commands import COMMANDS, Command, ReplCompleter, help_lines, parse_line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", Command("empty")),
        ("   \t ", Command("empty")),
        ("# a comment in a script", Command("empty")),
        ("Who is the CEO of Acme?", Command("ask", text="Who is the CEO of Acme?")),
        ("  spaced question  ", Command("ask", text="spaced question")),
        (":edit Who leads Acme? => Jane Doe", Command("edit", text="Who leads Acme?", target="Jane Doe")),
        (":edit a=>b", Command("edit", text="a", target="b")),
        (":edit x => y => z", Command("edit", text="x", target="y => z")),
        (":EDIT p => t", Command("edit", text="p", target="t")),
        (":e p => t", Command("edit", text="p", target="t")),
        (":edit", Command("edit_form")),
        (":edit   ", Command("edit_form")),
        (":forget 3f2a", Command("forget", text="3f2a")),
        (":forget 3F2A9C1E", Command("forget", text="3f2a9c1e")),
        (":history 3f2a9c1e", Command("history", text="3f2a9c1e")),
        (":list", Command("list")),
        (":list work", Command("list", text="work")),
        (":list *", Command("list", text="*")),
        (":conflicts", Command("conflicts")),
        (":conflicts work", Command("conflicts", text="work")),
        (":conflicts *", Command("conflicts", text="*")),
        (":ls", Command("list")),
        (":why", Command("why")),
        (":diff Who leads Acme?", Command("diff", text="Who leads Acme?")),
        (":ns", Command("ns")),
        (":ns work", Command("ns", text="work")),
        (":backend", Command("backend")),
        (":stats", Command("stats")),
        (":help", Command("help")),
        (":help edit", Command("help", text="edit")),
        (":help :forget", Command("help", text="forget")),
        (":?", Command("help")),
        (":quit", Command("quit")),
        (":q", Command("quit")),
        (":exit", Command("quit")),
    ],
)
def test_parse_line(line: str, expected: Command) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "hint_part"),
    [
        (":", "needs a command name"),
        (":frobnicate", "unknown command ':frobnicate'"),
        (":forgte 1234", "did you mean :forget?"),
        (":edit no arrow here", "missing '=>'"),
        (":edit => target only", "empty prompt"),
        (":edit prompt only =>", "empty target"),
        (":edit   =>   ", "empty prompt"),
        (":forget", "missing edit id"),
        (":forget 3f2", "at least 4 hex"),
        (":forget xyz12", "not an edit id prefix"),
        (":forget 3f2a 9c1e", "not an edit id prefix"),
        (":history", "missing edit id"),
        (":history zzzz", "not an edit id prefix"),
        (":diff", "missing question"),
        (":ns two words", "not a namespace name"),
        (":ns a:b", "not a namespace name"),
        (":ns *", "not a namespace name"),
        (":list two words", "not a namespace name"),
        (":why now", ":why takes no arguments"),
        (":stats please", ":stats takes no arguments"),
        (":quit now", ":quit takes no arguments"),
        (":help nothing", "no command ':nothing'"),
    ],
)
def test_malformed_input_gives_one_line_hint(line: str, hint_part: str) -> None:
    command = parse_line(line)
    assert command.kind == "invalid"
    assert hint_part in command.hint
    assert "\n" not in command.hint


def test_usage_hints_name_the_command() -> None:
    assert parse_line(":edit nothing").hint.endswith("usage: :edit <prompt> => <target>")
    assert parse_line(":forget").hint.endswith("usage: :forget <id-prefix>")


def test_help_covers_every_command() -> None:
    rows = help_lines()
    assert [usage.split()[0] for usage, _ in rows] == [f":{name}" for name in COMMANDS]
    assert help_lines("why") == [(":why", COMMANDS["why"][1])]


# (edit_id, prompt, active): one active edit, one forgotten, one superseded, sharing the prefix "1a".
EDITS = [
    ("1a00aaaa", "Who leads Acme?", True),
    ("1a11bbbb", "Who led Acme?", False),
    ("1a22cccc", "Acme CEO?", False),
]


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        (":forget 1a", ["1a00aaaa"]),  # only what can be forgotten
        (":restore 1a", ["1a11bbbb", "1a22cccc"]),  # only what can be brought back
        (":restore 1a1", ["1a11bbbb"]),
        (":history 1a", ["1a00aaaa", "1a11bbbb", "1a22cccc"]),  # any edit has a history
        (":forget 2b", []),
        (":ns wo", ["work"]),
        (":conflicts wo", ["work"]),
        (":rest", [":restore"]),
    ],
)
def test_completion_offers_what_the_command_accepts(line: str, offered: list[str]) -> None:
    completer = ReplCompleter(lambda: EDITS, lambda: ["default", "work"])
    found = completer.get_completions(Document(line), CompleteEvent(completion_requested=True))
    assert [c.text for c in found] == offered
