"""SIGKILL during adds through EditMemory, for the in-model backends that write their own state (grace's
codebook entries, the weight editors' journals): every acknowledged edit is in the store after
reopening, and the backend holds it (grace answers with it; a weight editor's weights are bitwise those
of a memory that made the active edits in order and in the same batches, uninterrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recall.backends.grace import GraceBackend
from recall.backends.weight_editor import WeightEditor
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit

WRITER = Path(__file__).with_name("memory_crash_writer.py")
QUESTIONS = ["who is the ceo of acme ?", "what is the capital of france ?", "who wrote the novel ?"]
SUBJECTS = ["acme", "france", "novel"]  # in the questions: rome needs one
ANSWERS = ["jane doe", "lyon", "john smith", "marta quinlan", "paris"]


def edit_of(i: int) -> tuple[str, str, str]:
    """Edit i of the writer: a question made distinct by its number, written in the digits 1-3 that the
    tiny tokenizer knows (another digit would be <unk>: two edits with one key), and an answer."""
    digits, n = [], i + 1
    while n:
        n, d = divmod(n - 1, 3)
        digits.append(str(d + 1))
    return f"{QUESTIONS[i % 3]} {' '.join(reversed(digits))}", ANSWERS[i % 5], SUBJECTS[i % 3]


def kill_after(path: Path, backend: str, first: int, acks_wanted: int, stats: Path) -> dict[int, str]:
    """Run the writer until it acknowledged `acks_wanted` edits (or 60 s), kill it, return the acks."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), backend, str(first), str(stats)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: dict[int, str] = {}
    deadline = time.monotonic() + 60
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() != "ready":
            index, edit_id = line.split()
            acked[int(index)] = edit_id
        if len(acked) >= acks_wanted or time.monotonic() > deadline:
            break
    child.send_signal(signal.SIGKILL)  # possibly mid-edit: between the backend's write and the store's
    child.wait()
    return acked


@pytest.mark.parametrize("backend", ["grace", "rome", "ft", "memit", "alphaedit"])
def test_sigkill_between_adds_loses_no_acknowledged_edit(
    backend: str, tmp_path: Path, tiny_lm: LanguageModel, stats_dir: Path
) -> None:
    # The writer runs on one thread; so does this process, for deltas it recomputes and the uninterrupted
    # memory it compares with (another thread count sums in another order: not bitwise the same).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        check_after_kills(backend, tmp_path, tiny_lm, stats_dir)
    finally:
        torch.set_num_threads(threads)


def check_after_kills(backend: str, tmp_path: Path, tiny_lm: LanguageModel, stats_dir: Path) -> None:
    path, acked, first = tmp_path / "memory", {}, 0
    for trial, wanted in enumerate((2, 3, 1)):
        new = kill_after(path, backend, first, wanted, stats_dir)
        assert new, f"trial {trial}: the writer acknowledged nothing"
        acked.update(new)
        first = max(acked) + 1
    with EditMemory.open(path, lm=tiny_lm) as memory:
        active = {r.edit_id for r in memory.list(None)}
        assert set(acked.values()) <= active
        if isinstance(memory.backend, WeightEditor):
            editor = memory.backend
            assert set(editor.records) == active  # a delta a kill left without its store record is gone
            with EditMemory.create(tmp_path / "uninterrupted", memory.config, lm=tiny_lm) as fresh:
                for entry in editor.journal.values():  # the same edits in the same batches
                    batch = [editor.records[i] for i in entry.edit_ids]
                    fresh.add_many([Edit(r.prompt, r.target, r.subject) for r in batch], policy="keep_both")
                assert isinstance(fresh.backend, WeightEditor)
                for module, weight in editor.weights.items():
                    assert torch.equal(weight, fresh.backend.weights[module])
            return
        grace = memory.backend
        assert isinstance(grace, GraceBackend)
        assert set(grace.entries) == active  # what a kill left half-written was dropped or retrained
        for index, edit_id in acked.items():
            # the entry whose ball holds the edit (its own, or one its key fell into with the same answer)
            owner = grace.codebook.edit_ids[grace.codebook.owner[edit_id]]
            assert owner in memory.ask(edit_of(index)[0], max_new_tokens=2).used, index
