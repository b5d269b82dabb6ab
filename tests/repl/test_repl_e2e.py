"""The issue's checks, end to end: `recall repl` in a pseudo-terminal on the real embedded model.

An edit changes the answer and its paraphrase, :why names the edit, :forget restores the base answer, a
restart keeps the edits, a conflicting edit supersedes the first and :history shows both; a scripted run
from a file prints plain text only. Three model loads in all.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from repl_pty import PROMPT, clean, pty_env, send, spawn

RECALL = Path(sys.executable).with_name("recall")
CEO_Q = "Who is the CEO of Zorblax Industries?"
PARAPHRASE = "Who leads Zorblax Industries as chief executive?"
FIRST, SECOND = "Marta Quinlan", "Ruth Okafor"
EDIT_ID = re.compile(r"added ([0-9a-f]{8})")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not RECALL.exists()
        or any(importlib.util.find_spec(m) is None for m in ("recall.memory", "recall.cli.main")),
        reason=f"needs recall.memory, recall.cli.main and the console script {RECALL} (pip install -e .)",
    ),
]


def _added(output: str) -> str:
    match = EDIT_ID.search(output)
    assert match, output
    return match[1]


def _repl(memory: Path, home: Path) -> pexpect.spawn:
    return spawn([str(RECALL), "repl", "--memory", str(memory)], home, timeout=180)


def _quit(child: pexpect.spawn) -> None:
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF, timeout=60)
    assert "bye" in clean(child.before)
    child.close()
    assert child.exitstatus == 0


def test_edit_why_forget_restart_supersede_history(tmp_path: Path) -> None:
    memory, home = tmp_path / "memory", tmp_path / "home"

    child = _repl(memory, home)
    try:
        base = send(child, CEO_Q)
        assert FIRST not in base
        first_id = _added(send(child, f":edit {CEO_Q} => {FIRST}"))
        answer = send(child, CEO_Q)
        assert FIRST in answer
        assert f"[edit {first_id}]" in answer
        assert FIRST in send(child, PARAPHRASE)
        why = send(child, ":why")
        assert first_id in why
        assert "admitted 1 of" in why

        assert f"forgot {first_id}" in send(child, f":forget {first_id[:6]}")
        restored = send(child, CEO_Q)
        assert FIRST not in restored
        assert "[edit" not in restored
        assert restored == base

        kept_id = _added(send(child, f":edit {CEO_Q} => {FIRST}"))
        _quit(child)
    finally:
        child.close(force=True)

    child = _repl(memory, home)  # a restart on the same memory keeps the edit
    try:
        assert FIRST in send(child, CEO_Q)
        assert kept_id in send(child, ":list")
        superseding = send(child, f":edit {CEO_Q} => {SECOND}")
        second_id = _added(superseding)
        assert f"supersedes {kept_id}" in superseding
        answer = send(child, CEO_Q)
        assert SECOND in answer
        assert FIRST not in answer
        history = send(child, f":history {second_id}")
        assert kept_id in history
        assert second_id in history
        assert "superseded" in history
        listing = send(child, ":list")
        assert second_id in listing
        assert kept_id not in listing
        _quit(child)
    finally:
        child.close(force=True)

    script = tmp_path / "script.txt"
    script.write_text(f"# scripted\n{CEO_Q}\n:why\n:list\n:history {second_id}\n:stats\n:frob\n")
    with script.open() as stdin:
        run = subprocess.run(
            [str(RECALL), "repl", "--memory", str(memory)],
            stdin=stdin,
            capture_output=True,
            env=pty_env(home),
            timeout=180,
            check=False,
        )
    assert run.returncode == 0, run.stderr.decode()
    out = run.stdout.decode()
    assert b"\x1b" not in run.stdout
    assert b"\x1b" not in run.stderr
    assert out.splitlines()[0].endswith(f"[edit {second_id}]")
    assert SECOND in out.splitlines()[0]
    assert "unknown command ':frob'" in out
    assert "Traceback" not in out + run.stderr.decode()
    assert PROMPT.search(out) is None  # no prompt strings when scripted
    assert "recall[" not in out
