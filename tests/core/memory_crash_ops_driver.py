"""Driver of the EditMemory crash test (test_memory_crash_ops.py): loads the tiny llama once, then for
each line "TRIAL MEMORY_DIR" on stdin forks a worker that runs random operations on the memory (add,
add_many, forget, supersede, create) until it is killed. Before an operation that changes existing
edits it writes "intent ..."; after each operation returns, "ack ...": one os.write per line, so a kill
never leaves half a line.

Usage: python memory_crash_ops_driver.py  (OMP_NUM_THREADS=1: forking after a thread pool would hang)
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from memory_crash_writer import tiny_lm
from test_memory_crash import edit_of

from recall.config import load_config
from recall.memory import EditMemory
from recall.results import Edit

OVERRIDES = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5", "retrieval.top_k=2"]


def say(*words: object) -> None:
    os.write(1, (" ".join(map(str, words)) + "\n").encode())


def work(trial: int, path: Path, lm: object) -> None:
    rng = random.Random(trial)
    config = load_config(backend="lte", overrides=OVERRIDES)
    if (path / "manifest.json").is_file():
        memory = EditMemory.open(path, lm=lm)  # type: ignore[arg-type]
    else:
        memory = EditMemory.create(path, config, lm=lm)  # type: ignore[arg-type]
        say("ack create", path)
    say("ready")
    for step in range(10_000):
        n = trial * 10_000 + step
        kind = rng.choices(["add", "add_many", "forget", "supersede", "create"], [4, 2, 2, 2, 1])[0]
        active = memory.list()
        if kind == "add" or (kind in ("forget", "supersede") and not active):
            prompt, target, _ = edit_of(4 * n)  # 4n, 4n+1..4n+3: every question new
            say("ack add", memory.add(prompt, target).edit_id)
        elif kind == "add_many":
            batch = [Edit(*edit_of(4 * n + 1 + i)[:2]) for i in range(rng.randint(2, 3))]
            say("ack add_many", *(r.edit_id for r in memory.add_many(batch)))
        elif kind == "forget":
            victim = rng.choice(active)
            say("intent", victim.edit_id)
            say("ack forget", memory.forget(victim.edit_id).edit_id)
        elif kind == "supersede":
            old = rng.choice(active)
            say("intent", old.edit_id)
            result = memory.add(old.prompt, edit_of(n)[1] if edit_of(n)[1] != old.target else "paris")
            say("ack supersede", result.edit_id, *(r.edit_id for r in result.superseded))
        else:
            created = path.parent / f"{path.name}-created-{n}"
            EditMemory.create(created, config, lm=lm).close()  # type: ignore[arg-type]
            say("ack create", created)


def main() -> None:
    lm = tiny_lm()
    say("driver ready")
    for line in sys.stdin:
        trial, path = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                work(int(trial), Path(path), lm)
            finally:
                os._exit(0)
        say("pid", pid)
        os.waitpid(pid, 0)
        say("done", trial)


if __name__ == "__main__":
    main()
