"""`recall repl` over FakeMemory in a pseudo-terminal: rich output, Ctrl-C, Ctrl-D, completion, history."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect
from repl_pty import PROMPT, clean, send, spawn

ENTRY = str(Path(__file__).with_name("repl_fake_entry.py"))
CEO_Q = "Who is the CEO of Zorblax Industries?"


def test_terminal_session(tmp_path: Path) -> None:
    child = spawn([sys.executable, ENTRY, "--memory", str(tmp_path / "mem")], tmp_path, timeout=20)
    try:
        assert "\x1b[" in child.before  # rich on a terminal
        assert "I do not know." in send(child, CEO_Q)
        added = send(child, f":edit {CEO_Q} => Marta Quinlan")
        assert added == f"added 1a2babca  {CEO_Q} => Marta Quinlan"
        assert send(child, CEO_Q) == "Marta Quinlan.  [edit 1a2babca]"
        assert "1a2babca" in send(child, ":why")
        assert send(child, ":nonsense").startswith("unknown command ':nonsense'")

        child.sendline("please answer slowly")  # FakeMemory sleeps 30 s on 'slowly'
        time.sleep(0.5)
        started = time.monotonic()
        child.sendintr()
        child.expect_exact("(cancelled)", timeout=10)
        assert time.monotonic() - started < 5
        child.expect(PROMPT)
        assert send(child, ":stats").count("fake-lm") == 1  # still running, state intact

        # The completion may be drawn in one piece or as the typed part, then the rest (on a busy machine
        # the keys arrive apart): allow escape codes between the two.
        child.send(":forg\t")  # completes the command name
        child.expect(r":forg(?:\x1b\[[0-9;?]*[A-Za-z])*et")
        child.send(" 1a2\t")  # completes the edit id
        child.expect(r"1a2(?:\x1b\[[0-9;?]*[A-Za-z])*babca")
        child.sendline("")
        child.expect_exact("forgot 1a2babca")
        child.expect(PROMPT)

        child.send("half a line")
        child.sendintr()  # Ctrl-C at the prompt drops the line, the REPL stays
        child.expect(PROMPT)
        assert "I do not know." in send(child, CEO_Q)

        child.sendline(":edit")  # the guided form: one prompt a field
        for label, value in (("prompt>", CEO_Q), ("target>", "Ruth Okafor"), ("subject (optional)>", "")):
            child.expect_exact(label)
            child.sendline(value)
        child.expect(PROMPT)
        assert f"added 1a2cabca  {CEO_Q} => Ruth Okafor" in clean(child.before)
        assert send(child, CEO_Q) == "Ruth Okafor.  [edit 1a2cabca]"
        child.sendeof()
        child.expect(pexpect.EOF, timeout=10)
        assert "bye" in clean(child.before)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "recall" / "repl_history").read_text()
    assert f"+:edit {CEO_Q} => Marta Quinlan" in history
