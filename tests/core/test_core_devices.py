"""--device: where the model and the encoder run. The CPU half runs everywhere; the `gpu` tests need CUDA
and compare a memory on the GPU with the same memory on the CPU."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from recall.backends.grace import GraceBackend
from recall.backends.weight_editor import WeightEditor
from recall.cli.main import main
from recall.config import RecallConfig, load_config
from recall.errors import ConfigError
from recall.lm.devices import resolve_device
from recall.lm.loading import LanguageModel, load_lm
from recall.memory import EditMemory
from recall.retrieval.encoder import HashingEncoder

# GPU kernels sum in another order than the CPU's: log-probs agree to this, not bit for bit.
LOGPROB_TOLERANCE = 1e-3


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("spec", ["auto", None, "cpu", " CPU "])
def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(spec: str | None) -> None:
    assert resolve_device(spec) == torch.device("cpu")


@pytest.mark.usefixtures("no_cuda")
def test_cuda_without_a_gpu_is_refused_with_the_way_out() -> None:
    with pytest.raises(
        ConfigError, match=r"device 'cuda:1': PyTorch sees no CUDA GPU.*use cpu or auto instead"
    ):
        resolve_device("cuda:1")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cuda:-1"])
def test_unknown_devices_name_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError, match="is not one of auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize(("device", "message"), [("cuda", "PyTorch sees no CUDA GPU"), ("tpu", "not one of")])
def test_cli_refuses_a_device_in_one_line_and_creates_nothing(
    device: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memory_dir = tmp_path / "memory"
    argv = ["edit", "who is the ceo of acme ?", "jane doe", "--memory", str(memory_dir), "--device", device]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("recall edit: device ")
    assert message in err
    assert "Traceback" not in err
    assert not memory_dir.exists()  # refused before the store was made


def test_a_memory_runs_where_its_model_is_and_says_so(tiny_lm: LanguageModel, tmp_path: Path) -> None:
    config = load_config(backend="lte", overrides=["encoder.name=hashing", "model.name=tiny"])
    with EditMemory.create(tmp_path / "m", config, lm=tiny_lm, encoder=HashingEncoder()) as memory:
        assert memory.info()["device"] == "cpu"


def test_load_lm_puts_the_model_on_the_device(tiny_model_dir: Path) -> None:
    assert load_lm(str(tiny_model_dir), device="cpu").device == torch.device("cpu")


def on_gpu(lm: LanguageModel) -> LanguageModel:
    """A copy of `lm` on the GPU (same tokenizer, id and fingerprint)."""
    model: Any = copy.deepcopy(lm.model)
    model.to("cuda")  # transformers types .to() too narrowly
    return LanguageModel(model, lm.tokenizer, lm.model_id, lm.fingerprint)


def _answers(memory: EditMemory) -> tuple[list[str], list[tuple[float, ...]]]:
    memory.add("who is the ceo of acme ?", "jane doe")
    questions = ["who is the ceo of acme ?", "what is the largest planet ?"]
    texts = [memory.ask(q, max_new_tokens=4).text for q in questions]
    scores = [memory.score(q, "jane doe").logprobs for q in questions]
    return texts, scores


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["lte", "recipe"])
def test_a_memory_on_the_gpu_answers_as_on_the_cpu(
    backend: str, tiny_lm: LanguageModel, tiny_recipe_dir: Path, tmp_path: Path
) -> None:
    overrides = ["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]
    if backend == "recipe":
        recipe = [f"backend.checkpoint={tiny_recipe_dir}", "backend.relevance=null", "sentinel.margin=null"]
        recipe += ["backend.long_checkpoint=null"]
        overrides = [*recipe, f"encoder.name={tiny_recipe_dir}", "model.name=tiny"]
    config = load_config(backend=backend, overrides=overrides)
    gpu_lm = on_gpu(tiny_lm)
    results = []
    for lm in (tiny_lm, gpu_lm):
        encoder = HashingEncoder() if backend == "lte" else None
        with EditMemory.create(tmp_path / str(lm.device), config, lm=lm, encoder=encoder) as memory:
            assert memory.info()["device"] == str(lm.device)
            results.append(_answers(memory))
    (cpu_texts, cpu_scores), (gpu_texts, gpu_scores) = results
    assert gpu_texts == cpu_texts
    for cpu, gpu in zip(cpu_scores, gpu_scores, strict=True):
        assert gpu == pytest.approx(cpu, abs=LOGPROB_TOLERANCE)


@pytest.mark.gpu
def test_auto_picks_the_gpu_and_cuda_names_its_index() -> None:
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.gpu
def test_grace_trains_and_answers_on_the_gpu(tiny_lm: LanguageModel, tmp_path: Path) -> None:
    # The values train on the GPU: scores may move within float noise of the CPU's, the answers may not.
    tiny = {"encoder.name": "hashing", "model.name": "tiny", "backend.layer": 1, "backend.n_iter": 20}
    config = load_config(backend="grace", overrides=[f"{k}={v}" for k, v in tiny.items()])
    gpu_lm = on_gpu(tiny_lm)
    answers = []
    for lm in (tiny_lm, gpu_lm):
        with EditMemory.create(tmp_path / str(lm.device), config, lm=lm, encoder=HashingEncoder()) as memory:
            edit = memory.add("who is the ceo of acme ?", "jane")
            assert isinstance(memory.backend, GraceBackend)
            assert memory.backend.entries[edit.edit_id].value.device.type == "cpu"  # entries live on the CPU
            answer = memory.ask("who is the ceo of acme ?", max_new_tokens=1)
            assert answer.used == (edit.edit_id,)
            answers.append((answer.text, memory.ask("what is the largest planet ?", max_new_tokens=4).text))
    assert answers[0] == answers[1]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["rome", "ft"])
def test_a_weight_editor_edits_on_the_gpu_as_on_the_cpu(
    backend: str, tiny_lm: LanguageModel, tmp_path: Path, backend_config: Callable[[str], RecallConfig]
) -> None:
    # δ and the weight train on the GPU: the deltas may move within float noise of the CPU's.
    config = backend_config(backend)
    gpu_lm = on_gpu(tiny_lm)
    edited = []
    for lm in (tiny_lm, gpu_lm):
        with EditMemory.create(tmp_path / str(lm.device), config, lm=lm, encoder=HashingEncoder()) as memory:
            edit = memory.add("who is the ceo of acme ?", "jane", "acme")
            assert isinstance(memory.backend, WeightEditor)
            assert memory.ask("who is the ceo of acme ?", max_new_tokens=1).used == (edit.edit_id,)
            edited.append({p: w.detach().cpu() for p, w in memory.backend.weights.items()})
    for path, weight in edited[0].items():
        assert torch.allclose(edited[1][path], weight, atol=1e-4), path
