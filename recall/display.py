"""Stored text as the CLI and the REPL print it: one line per value, so an edit's text can never forge
a line of `recall list` (a target holding "\\n1234abcd  active  default  ...")."""

from __future__ import annotations

from memory_store import EditRecord

# Shown as they are although not printable: the zero-width (non-)joiners of scripts and emoji.
_KEPT = {"\u200c", "\u200d"}


def one_line(text: str) -> str:
    """`text` with each newline, tab and other unprintable character written as its escape (\\n, \\t,
    \\x1b, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in _KEPT else repr(c)[1:-1] for c in text)


def fact(record: EditRecord) -> str:
    """An edit as "prompt => target", on one line."""
    return f"{one_line(record.prompt)} => {one_line(record.target)}"
