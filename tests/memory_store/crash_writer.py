"""Child process of the crash test: adds edits one by one, printing each edit_id once add() has returned.

Usage: python crash_writer.py MEMORY_DIR SEED FIRST_INDEX INDEX_KIND. The vector of edit i is
`crash_vector(seed, i)`, so the parent can recompute it after killing this process with SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from memory_store import EditRecord, MemoryStore

CRASH_DIM = 32


def crash_vectors(seed: int, i: int) -> np.ndarray:
    """Edit i's keys: one or two unit vectors (so multi-key edits are crash-tested too)."""
    rng = np.random.default_rng((seed, i))
    keys = rng.standard_normal((1 + i % 2, CRASH_DIM)).astype(np.float32)
    out: np.ndarray = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    return out


def main() -> None:
    path, seed, first, kind = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = MemoryStore.open(path, dim=CRASH_DIM, create=True, index=kind)  # type: ignore[arg-type]
    print("ready", flush=True)
    i = first
    while True:
        rec = store.add(
            EditRecord(prompt=f"crash question {i}?", target=f"answer {i}"), crash_vectors(seed, i)
        )
        print(f"{i} {rec.edit_id}", flush=True)  # acknowledged: add() returned, so it must survive
        i += 1


if __name__ == "__main__":
    main()
