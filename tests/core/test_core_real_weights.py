"""The weight editors on the real embedded SmolLM2-135M: an edit makes the model give the new answer, and
forget puts back the base weights bit for bit (the statistics of `recall stats` are tested on the tiny
llama: here ROME runs with the identity, and memit/alphaedit with statistics of 32 short self-samples,
to keep the suite short)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recall.backends.weight_editor import WeightEditor
from recall.build import shared_lm
from recall.config import load_config
from recall.memory import EditMemory

pytestmark = pytest.mark.slow

PROMPT, TARGET, SUBJECT = "What is the capital of Zorblax?", "Lyon", "Zorblax"


SMALL_STATS = ["backend.corpus_samples=32", "backend.corpus_length=32"]


@pytest.mark.parametrize(
    ("backend", "overrides"),
    [
        ("rome", ["backend.statistics=identity"]),
        ("ft", ["backend.mode=target"]),
        ("memit", SMALL_STATS),
        ("alphaedit", SMALL_STATS),
    ],
)
def test_an_edit_gives_the_new_answer_and_forget_restores_the_weights(
    backend: str, overrides: list[str], stats_dir: Path
) -> None:
    lm = shared_lm("smollm2-135m")
    stats = [] if backend == "ft" else [f"backend.stats_dir={stats_dir}"]  # ft reads no statistics
    config = load_config(backend=backend, overrides=[*overrides, *stats])
    with EditMemory.temporary(config, lm=lm) as memory:
        editor = memory.backend
        assert isinstance(editor, WeightEditor)
        before = memory.score(PROMPT, TARGET)
        edit = memory.add(PROMPT, TARGET, SUBJECT)
        after = memory.score(PROMPT, TARGET)
        assert after.predicted_ids == after.target_ids  # every target token is the model's first choice
        assert sum(after.logprobs) > sum(before.logprobs)
        assert memory.ask(PROMPT, max_new_tokens=6).text.startswith(TARGET)
        assert memory.score(PROMPT, TARGET, use_memory=False) == before  # the base weights, swapped in
        memory.forget(edit.edit_id)
        assert all(torch.equal(w, editor.base[p]) for p, w in editor.weights.items())
        assert memory.score(PROMPT, TARGET) == before
