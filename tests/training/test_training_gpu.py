"""`python -m training recipe` with device=cuda: the run trains on the GPU, and what it writes serves on
the GPU and on the CPU alike. Skipped where PyTorch sees no CUDA device (CI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from training.config import RecipeTrainConfig


@pytest.mark.gpu
def test_recipe_training_on_the_gpu_writes_a_model_both_devices_serve(
    tiny_model_dir: Path, tiny_recipe_config: Callable[..., RecipeTrainConfig]
) -> None:
    from recall.backends import ScoreRequest
    from recall.backends.recipe.backend import RecipeBackend, RecipeConfig
    from recall.lm.loading import load_lm
    from training.recipe import run

    config = tiny_recipe_config(epochs=2, device="cuda")
    artifact = run(config)
    info = json.loads((artifact / "training.json").read_text())
    assert info["steps"] == 6
    assert info["validation"][-1]["step"] == 6
    request = ScoreRequest("who is the ceo of acme 1 ?", "jane doe")
    scores = []
    for device in ("cuda", "cpu"):
        backend = RecipeBackend(
            RecipeConfig(checkpoint=str(artifact)), load_lm(str(tiny_model_dir), device=device)
        )
        assert backend.knowledge.sentinel.device.type == device
        scores.append(backend.score_many([request])[0].logprobs)
    assert scores[0] == pytest.approx(scores[1], abs=1e-3)
