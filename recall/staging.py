"""Staging folders: a folder is written under a temporary name beside its final one, then renamed in
one step (the dequantized-model cache, a new memory), so a crash never leaves a half-written one. The
temporary name holds the writer's pid, so a later writer removes what a killed one left behind (a
first model load interrupted by Ctrl-C used to leak ~516 MB)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def staging_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder `parent/<prefix><pid>-<random>`, after sweeping `prefix` folders of dead pids."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def sweep(parent: Path, prefix: str) -> None:
    """Remove the staging folders under `parent` whose writing process no longer runs."""
    for folder in parent.glob(f"{prefix}*"):
        owner = folder.name[len(prefix) :].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid() or _running(int(owner)):
            continue
        logger.info("removing %s, left by process %s, which no longer runs", folder, owner)
        shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
