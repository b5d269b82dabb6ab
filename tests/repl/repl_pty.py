"""Driving `recall repl` in a pseudo-terminal: send a line, wait for the next prompt, return its output."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pexpect

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
# a fresh prompt starts a line; the echo of the accepted input is redrawn after cursor moves, not after "\n"
PROMPT = re.compile(r"\n(?:\x1b\[[0-9;?]*[A-Za-z])*recall\[[^\]\s]+\]>")
REPO = Path(__file__).resolve().parents[2]


def pty_env(data_home: Path) -> dict[str, str]:
    """The caller's environment, with history under `data_home` and no cursor-position queries."""
    env = dict(os.environ)
    env.update(
        XDG_DATA_HOME=str(data_home),
        RECALL_DATA_DIR=str(data_home / "recall"),
        PROMPT_TOOLKIT_NO_CPR="1",  # pexpect answers no cursor-position request
        TERM="xterm-256color",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    env.pop("NO_COLOR", None)
    return env


def spawn(argv: list[str], data_home: Path, timeout: float = 120) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0], argv[1:], env=pty_env(data_home), encoding="utf-8", dimensions=(50, 220), timeout=timeout
    )
    child.expect(PROMPT)
    return child


def clean(text: str) -> str:
    """`text` without escape codes, carriage returns and the echoed input lines."""
    lines = ANSI.sub("", text).replace("\r", "").split("\n")
    return "\n".join(line for line in lines if not re.match(r"\s*recall\[[^\]\s]+\]>", line)).strip()


def send(child: pexpect.spawn, line: str, timeout: float = 120) -> str:
    """Send one line and return its output (cleaned) once the next prompt shows."""
    child.sendline(line)
    child.expect(PROMPT, timeout=timeout)
    return clean(child.before)
