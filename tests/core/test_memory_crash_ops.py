"""Issue #33: SIGKILL during EditMemory's writes (add, add_many, forget, supersede, create), >= 200
times: no acknowledged change is lost, and every memory opens with the settings it was created with.
The worker processes are forked from a driver that loaded the model once (memory_crash_ops_driver.py),
so a trial costs milliseconds, not an interpreter start."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recall.lm.loading import LanguageModel
from recall.memory import EditMemory

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("memory_crash_ops_driver.py")
TRIALS = 220


def test_sigkill_during_any_write_loses_no_acknowledged_change(
    tmp_path: Path, tiny_lm: LanguageModel
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    driver = subprocess.Popen(
        [sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        cwd=DRIVER.parent,
    )  # fmt: skip
    assert driver.stdin is not None
    assert driver.stdout is not None
    assert driver.stdout.readline().strip() == "driver ready"
    rng = random.Random(0)
    path = tmp_path / "memory"
    expected: dict[str, str] = {}  # edit_id -> status after every acknowledged change
    created: list[Path] = []
    kills = 0
    for trial in range(TRIALS):
        driver.stdin.write(f"{trial} {path}\n")
        driver.stdin.flush()
        pid = int(driver.stdout.readline().split()[1])
        wanted = rng.randint(0, 6)  # acknowledgements to wait for: 0 kills it while it opens
        uncertain: set[str] = set()  # edits an operation in flight may have changed
        acks = 0
        while acks < wanted:
            words = driver.stdout.readline().split()
            if words[0] == "ready":
                continue
            if words[0] == "intent":
                uncertain = {words[1]}
                continue
            kind, ids = words[1], words[2:]
            if kind in ("add", "add_many"):
                expected.update(dict.fromkeys(ids, "active"))
            elif kind == "forget":
                expected[ids[0]] = "retracted"
            elif kind == "supersede":
                expected[ids[0]] = "active"
                expected.update(dict.fromkeys(ids[1:], "superseded"))
            else:
                created.append(Path(ids[0]))
            uncertain = set()
            acks += 1
        time.sleep(rng.random() * 0.02)  # somewhere inside the next operation
        os.kill(pid, signal.SIGKILL)
        kills += 1
        words = driver.stdout.readline().split()
        while words[0] != "done":  # what the worker said before it died
            if words[0] == "ack" and words[1] == "create":
                created.append(Path(words[2]))
            if words[0] == "intent":
                uncertain.add(words[1])
            if words[0] == "ack" and words[1] != "create":
                uncertain.update(words[2:])  # acknowledged after we stopped counting: either state is fine
            words = driver.stdout.readline().split()
        if not (path / "manifest.json").is_file():
            continue  # killed before the first create finished: no memory, nothing acknowledged
        with EditMemory.open(path, lm=tiny_lm) as memory:
            stored = {r.edit_id: r.status for r in memory.list(None, None)}
            assert memory.config.retrieval.top_k == 2
        for edit_id, status in expected.items():
            if edit_id in uncertain:
                expected[edit_id] = stored.get(edit_id, status)  # the in-flight change happened or not
                continue
            assert stored.get(edit_id) == status, (trial, edit_id)
    driver.stdin.close()
    driver.wait(timeout=60)
    assert kills >= 200
    assert len(expected) > 100
    for folder in created:  # every acknowledged memory opens with its settings
        with EditMemory.open(folder, lm=tiny_lm) as memory:
            assert memory.config.retrieval.top_k == 2
    for folder in tmp_path.glob("memory-created-*"):  # and every other one (a create killed half-way)
        if (folder / "manifest.json").is_file():
            EditMemory.open(folder, lm=tiny_lm).close()
