"""REPL terminal I/O: lines -> typed `Command`s, completion, line readers, and plain or rich output."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memory_store import MIN_ID_PREFIX, InvalidEditError, validate_namespace
from recall.paths import data_dir

CommandKind = Literal[
    "empty",
    "ask",
    "edit",
    "edit_form",
    "forget",
    "restore",
    "list",
    "conflicts",
    "history",
    "why",
    "diff",
    "ns",
    "backend",
    "stats",
    "help",
    "quit",
    "invalid",
]

SHORT_ID = 8  # how many hex chars of an edit_id the REPL shows
ALL_NAMESPACES = "*"  # `:list *` lists every namespace

log = logging.getLogger(__name__)

_ID_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_ID_PREFIX},32}}")
_NAMESPACE = re.compile(r"\w[\w.@/-]*")  # lowercase letters, digits, _ . @ / -

# name -> (argument usage, one-line summary), in the order :help shows them
COMMANDS: dict[str, tuple[str, str]] = {
    "edit": ("<prompt> => <target>", "teach a fact; ':edit' alone opens a guided form"),
    "forget": ("<id-prefix>", "retract an edit (kept in its history)"),
    "restore": ("<id-prefix>", "bring back a forgotten or superseded edit"),
    "list": ("[namespace|*]", "active edits of the current (or given, or every) namespace"),
    "conflicts": ("[namespace|*]", "pairs of active edits that answer one question (or close ones) two ways"),
    "history": ("<id-prefix>", "an edit's events, with the edits it superseded or that superseded it"),
    "why": ("", "explain the last answer: hits, scores, threshold, sentinel decision, injection"),
    "diff": ("<question>", "answer with and without the memory, side by side"),
    "ns": ("[name]", "switch namespace (alone: show the current one and all namespaces)"),
    "backend": ("", "the backend, sentinel and model in use"),
    "stats": ("", "edits, namespaces, model, encoder, latency of the last answer"),
    "help": ("[command]", "this help"),
    "quit": ("", "leave (Ctrl-D does the same)"),
}
ALIASES = {"q": "quit", "exit": "quit", "h": "help", "?": "help", "e": "edit", "ls": "list"}
_NO_ARGS: dict[str, CommandKind] = {"why": "why", "backend": "backend", "stats": "stats", "quit": "quit"}


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed input line, tagged by `kind`.

    `text` holds the question (ask, diff), the edit prompt (edit), the id prefix (forget, restore,
    history), the namespace (list, conflicts, ns) or the help topic; `target` the edit target; `hint`
    the one-line message of an `invalid` line.
    """

    kind: CommandKind
    text: str = ""
    target: str = ""
    hint: str = ""


def usage(name: str) -> str:
    args = COMMANDS[name][0]
    return f":{name} {args}".rstrip()


def short_id(edit_id: str) -> str:
    return edit_id[:SHORT_ID]


def _invalid(hint: str) -> Command:
    return Command("invalid", hint=hint)


def _usage_hint(name: str, problem: str) -> Command:
    return _invalid(f"{problem}; usage: {usage(name)}")


def parse_edit(rest: str) -> Command:
    """Split `<prompt> => <target>` on the first '=>'; both sides must be non-empty."""
    if "=>" not in rest:
        return _usage_hint("edit", "missing '=>' between prompt and target")
    prompt, _, target = rest.partition("=>")
    prompt, target = prompt.strip(), target.strip()
    if not prompt:
        return _usage_hint("edit", "empty prompt before '=>'")
    if not target:
        return _usage_hint("edit", "empty target after '=>'")
    return Command("edit", text=prompt, target=target)


def _parse_id(name: str, rest: str) -> Command:
    if not rest:
        return _usage_hint(name, "missing edit id")
    prefix = rest.lower()
    if not _ID_PREFIX.fullmatch(prefix):
        return _usage_hint(
            name, f"{rest!r} is not an edit id prefix (at least {MIN_ID_PREFIX} hex characters)"
        )
    kinds: dict[str, CommandKind] = {"forget": "forget", "restore": "restore", "history": "history"}
    return Command(kinds[name], text=prefix)


def valid_namespace(name: str) -> bool:
    try:
        validate_namespace(name)  # the store's one written form: lowercase, NFKC
    except InvalidEditError:
        return False
    return bool(_NAMESPACE.fullmatch(name))


def _parse_namespace(name: str, rest: str) -> Command:
    kinds: dict[str, CommandKind] = {"ns": "ns", "list": "list", "conflicts": "conflicts"}
    kind = kinds[name]
    if rest and not (valid_namespace(rest) or (kind != "ns" and rest == ALL_NAMESPACES)):
        return _usage_hint(name, f"{rest!r} is not a namespace name (lowercase letters, digits, _ . @ / -)")
    return Command(kind, text=rest)


def parse_line(line: str) -> Command:
    """Parse one input line; never raises (malformed input gives `kind == "invalid"` with a hint)."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):  # '#' comments make `recall repl < script.txt` readable
        return Command("empty")
    if not stripped.startswith(":"):
        return Command("ask", text=stripped)
    parts = stripped[1:].split(maxsplit=1)
    if not parts:
        return _invalid("':' needs a command name; type :help for the list")
    name = ALIASES.get(parts[0].lower(), parts[0].lower())
    rest = parts[1].strip() if len(parts) > 1 else ""
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        suggestion = f" (did you mean :{close[0]}?)" if close else ""
        return _invalid(f"unknown command ':{parts[0]}'{suggestion}; type :help for the list")
    if name in _NO_ARGS:
        return _invalid(f":{name} takes no arguments") if rest else Command(_NO_ARGS[name])
    if name == "edit":
        return parse_edit(rest) if rest else Command("edit_form")
    if name in ("forget", "restore", "history"):
        return _parse_id(name, rest)
    if name in ("list", "conflicts", "ns"):
        return _parse_namespace(name, rest)
    if name == "diff":
        return Command("diff", text=rest) if rest else _usage_hint("diff", "missing question")
    topic = ALIASES.get(rest.lstrip(":").lower(), rest.lstrip(":").lower())
    if topic and topic not in COMMANDS:
        return _invalid(f"no command ':{topic}'; type :help for the list")
    return Command("help", text=topic)


def help_lines(topic: str = "") -> list[tuple[str, str]]:
    """(usage, summary) rows for :help, all commands or one."""
    names = [topic] if topic else list(COMMANDS)
    return [(usage(name), COMMANDS[name][1]) for name in names]


class ReplCompleter(Completer):
    """Completes command names, edit-id prefixes and namespaces. :forget offers active edits, :restore
    forgotten or superseded ones (what it can bring back), :history any."""

    def __init__(
        self,
        edits: Callable[[], Iterable[tuple[str, str, bool]]],
        namespaces: Callable[[], Iterable[str]],
    ) -> None:
        self._edits = edits  # () -> (edit_id, prompt, active) of every edit
        self._namespaces = namespaces

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith(":"):
            return
        if " " not in text:
            for name, (_, summary) in COMMANDS.items():
                if name.startswith(text[1:].lower()):
                    yield Completion(f":{name}", start_position=-len(text), display_meta=summary)
            return
        match = re.fullmatch(r":(\w+)\s+(\S*)", text)
        if match is None:
            return
        name, word = ALIASES.get(match[1], match[1]), match[2]
        if name in ("forget", "restore", "history"):
            wanted = {"forget": (True,), "restore": (False,), "history": (True, False)}[name]
            for edit_id, prompt, active in self._edits():
                if active in wanted and edit_id.startswith(word.lower()):
                    yield Completion(short_id(edit_id), start_position=-len(word), display_meta=prompt[:60])
        elif name in ("ns", "list", "conflicts"):
            for namespace in self._namespaces():
                if namespace.startswith(word):
                    yield Completion(namespace, start_position=-len(word))


LineReader = Callable[
    [str], str
]  # prompt text -> line; raises EOFError at the end, KeyboardInterrupt on Ctrl-C
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything but \t and \n


def history_file() -> Path:
    return data_dir() / "repl_history"


def flat(text: str) -> str:
    return " ".join(text.split())


class Output:
    """Plain text output: no colour and no control codes, for scripts, pipes and files."""

    is_rich = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def line(self, text: str = "") -> None:
        self._stream.write(_CONTROL_CHARS.sub("", text) + "\n")
        self._stream.flush()

    def note(self, text: str) -> None:
        self.line(text)

    def error(self, text: str) -> None:
        self.line(text)

    def answer(self, text: str, marker: str = "") -> None:
        self.line(f"{text}  {marker}" if marker else text)

    def block(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.line(f"    {part}")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
        if title:
            self.line(title)
        cells = [[flat(cell) for cell in row] for row in rows]
        widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
        for row in [list(columns), *cells]:
            self.line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def pairs(self, rows: Sequence[tuple[str, str]]) -> None:
        width = max((len(key) for key, _ in rows), default=0)
        for key, value in rows:
            self.line(f"{key + ':':<{width + 1}} {value}")


class RichOutput(Output):
    """Styled output for a terminal; user and model text is never parsed as rich markup."""

    is_rich = True

    def __init__(self, console: Console) -> None:
        self._console = console

    def _print(self, text: Text | Table) -> None:
        self._console.print(text, soft_wrap=isinstance(text, Text))

    def line(self, text: str = "") -> None:
        self._print(Text(text))

    def note(self, text: str) -> None:
        self._print(Text(text, style="dim"))

    def error(self, text: str) -> None:
        self._print(Text(text, style="red"))

    def answer(self, text: str, marker: str = "") -> None:
        styled = Text(text, style="bold")
        if marker:
            styled.append(f"  {marker}", style="dim cyan")
        self._print(styled)

    def block(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self._print(Text(f"    {part}", style="green"))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
        table = Table(title=title or None, title_justify="left", header_style="bold", show_edge=False)
        for name in columns:
            table.add_column(Text(name), overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self._print(table)

    def pairs(self, rows: Sequence[tuple[str, str]]) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in rows:
            grid.add_row(Text(key), Text(value))
        self._print(grid)


def stdin_reader(stdin: TextIO, prompt_to: TextIO | None) -> LineReader:
    def read(prompt: str) -> str:
        if prompt_to is not None:
            prompt_to.write(prompt)
            prompt_to.flush()
        line = stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    return read


def terminal_readers(
    edits: Callable[[], Iterable[tuple[str, str, bool]]], namespaces: Callable[[], Iterable[str]]
) -> tuple[LineReader, LineReader]:
    """prompt_toolkit line editing: persistent history and completion for commands, none for form fields."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    history: History
    try:
        history_file().parent.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(history_file()))
    except OSError as exc:
        log.debug("no persistent history: %s", exc)
        history = InMemoryHistory()
    completer = ReplCompleter(edits, namespaces)
    commands: PromptSession[str] = PromptSession(
        history=history, completer=completer, complete_while_typing=False
    )
    fields: PromptSession[str] = PromptSession()
    return commands.prompt, fields.prompt
