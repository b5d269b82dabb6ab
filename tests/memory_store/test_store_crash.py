"""Crash safety: SIGKILL a writer at random moments; every acknowledged edit must survive and be found."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from crash_writer import CRASH_DIM, crash_vectors

from memory_store import MemoryStore

WRITER = Path(__file__).with_name("crash_writer.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _kill_at_random(
    path: Path, seed: int, first: int, kind: str, rng: random.Random
) -> list[tuple[int, str]]:
    """Start the writer, SIGKILL it after a random delay, return the (index, edit_id) lines it completed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed), str(first), kind],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert child.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, b"")))  # type: ignore[union-attr]
    reader.start()
    # Usually kill mid-stream; sometimes while the store is still opening (or being created).
    if rng.random() < 0.8:
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.4))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    reader.join(timeout=30)
    stderr = child.stderr.read().decode() if child.stderr else ""
    assert child.returncode == -signal.SIGKILL, f"writer exited on its own ({child.returncode}): {stderr}"
    acked = []
    for line in lines:
        if line.endswith(b"\n") and line != b"ready\n":  # a torn last line was never acknowledged
            index, edit_id = line.decode().split()
            acked.append((int(index), edit_id))
    return acked


def _check(path: Path, seed_of: dict[int, int], acked: list[tuple[int, str]], kind: str) -> None:
    if kind == "hnsw":  # the HNSW index rebuilt after the crash must match SQLite too
        with MemoryStore.open(path, index="hnsw") as store:
            store.verify()
    # Top-1 checks use the exact index: "searchable" must not depend on HNSW's recall.
    with MemoryStore.open(path, dim=CRASH_DIM, create=True, index="flat") as store:
        store.verify()
        assert store.count() >= len(acked)
        for index, edit_id in acked:
            record = store.get(edit_id)
            assert record.status == "active"
            assert record.prompt == f"crash question {index}?"
            keys = crash_vectors(seed_of[index], index)
            assert (store.vectors(edit_id) == keys).all()
            top = store.search(keys[0], k=1)[0]
            assert top[0].record.edit_id == edit_id


def run_trials(tmp_path: Path, trials: int, seed: int) -> int:
    rng = random.Random(seed)
    path = tmp_path / "memory"
    acked: list[tuple[int, str]] = []
    seed_of: dict[int, int] = {}
    for trial in range(trials):
        kind = "hnsw" if trial % 3 == 2 else "flat"
        with MemoryStore.open(path, dim=CRASH_DIM, create=True) as store:
            first = store.count(status=None)  # unacknowledged but committed edits count too
        new = _kill_at_random(path, trial, first, kind, rng)
        seed_of.update({index: trial for index, _ in new})
        acked += new
        _check(path, seed_of, acked, kind)
    return len(acked)


def test_sigkill_loses_no_acknowledged_edit(tmp_path: Path) -> None:
    assert run_trials(tmp_path, trials=5, seed=0) > 0


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_edit_many_times(tmp_path: Path) -> None:
    assert run_trials(tmp_path, trials=50, seed=1) > 50
