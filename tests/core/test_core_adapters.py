"""LoRA adapters in the lte backend: edits go to the adapted weights, everything else to the base model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from memory_store import EditRecord, SearchHit
from recall.backends.base import ScoreRequest
from recall.backends.lte import LteBackend, LteConfig
from recall.config import load_config
from recall.errors import ConfigError
from recall.lm import lora
from recall.lm.loading import LanguageModel
from recall.lm.lora import ArtifactError, load_adapted, resolve_adapter


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_lm: LanguageModel) -> Path:
    """A LoRA adapter with random (non-zero) weights: it visibly changes the tiny model's outputs."""
    folder = tmp_path_factory.mktemp("adapter")
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(tiny_lm.model), lora).save_pretrained(str(folder))
    return folder


def _copy_with_training_info(adapter_dir: Path, folder: Path, info: dict[str, object]) -> Path:
    """A copy of the adapter whose training.json says `info`."""
    folder.mkdir()
    for file in adapter_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "training.json").write_text(json.dumps(info))
    return folder


def _hit(prompt: str, target: str) -> SearchHit:
    return SearchHit(record=EditRecord(prompt, target, statement=f"{prompt} {target}"), score=0.9, rank=0)


def test_edits_use_the_adapter_and_plain_prompts_the_untouched_base(
    tiny_lm: LanguageModel, adapter_dir: Path
) -> None:
    frozen = LteBackend(LteConfig(), tiny_lm)
    aligned = LteBackend(LteConfig(adapter=str(adapter_dir)), tiny_lm)
    hits = [_hit("who is the ceo of acme ?", "jane doe")]
    requests = [
        ScoreRequest("who is the ceo of acme ?", "jane doe", hits),
        ScoreRequest("what is the largest planet ?", "jupiter", []),
    ]
    with_edit_frozen, plain_frozen = frozen.score_many(requests)
    with_edit_aligned, plain_aligned = aligned.score_many(requests)
    assert plain_aligned == plain_frozen  # no admitted edit: exactly the base model
    assert with_edit_aligned.logprobs != with_edit_frozen.logprobs  # the adapter is in use
    assert aligned.lm is tiny_lm
    assert not any("lora" in name for name, _ in tiny_lm.model.named_modules())  # base left unchanged


def test_the_adapted_copy_shares_every_weight_the_merge_left_unchanged(
    tiny_lm: LanguageModel, adapter_dir: Path
) -> None:
    before = {name: p.detach().clone() for name, p in tiny_lm.model.named_parameters()}
    adapted = load_adapted(tiny_lm, str(adapter_dir)).model
    full = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(adapter_dir)).merge_and_unload()
    base = dict(tiny_lm.model.named_parameters(remove_duplicate=False))
    names = [name for name, _ in adapted.named_parameters(remove_duplicate=False)]
    assert names == list(base)
    for name, param in adapted.named_parameters(remove_duplicate=False):
        targeted = name.endswith(("q_proj.weight", "v_proj.weight"))
        assert (param is not base[name]) == targeted, name  # only what the merge changed is a copy
        assert torch.equal(param, full.get_parameter(name)), name  # the weights of a whole merged copy
    for name, param in tiny_lm.model.named_parameters():
        assert torch.equal(param, before[name]), name  # the base model is untouched


def test_an_adapter_that_would_merge_into_a_shared_weight_is_refused(
    tiny_lm: LanguageModel, adapter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {name: p.detach().clone() for name, p in tiny_lm.model.named_parameters()}
    # As if the matching rule missed the targeted modules: every weight would be shared.
    monkeypatch.setattr(lora, "_untargeted_parameters", lambda model, config: list(model.parameters()))
    with pytest.raises(ArtifactError, match=r"wraps .*q_proj"):
        load_adapted(tiny_lm, str(adapter_dir))
    for name, param in tiny_lm.model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_missing_adapter_names_the_bundled_ones(tiny_lm: LanguageModel, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no LoRA adapter at .*bundled name"):
        resolve_adapter(str(tmp_path / "nowhere"))
    with pytest.raises(ArtifactError):
        LteBackend(LteConfig(adapter="no-such-adapter"), tiny_lm)


def test_adapter_trained_for_another_model_is_refused(
    tiny_lm: LanguageModel, adapter_dir: Path, tmp_path: Path
) -> None:
    other = _copy_with_training_info(adapter_dir, tmp_path / "other", {"model_fingerprint": "not-this-model"})
    with pytest.raises(ArtifactError, match="trained for model fingerprint not-this-model"):
        load_adapted(tiny_lm, str(other))


def test_lte_aligned_preset_selects_the_bundled_adapter() -> None:
    config = load_config(backend="lte_aligned")
    assert config.backend.name == "lte"
    assert isinstance(config.backend, LteConfig)
    assert config.backend.adapter == "lte-smollm2-135m"
    assert config.retrieval.top_k == config.backend.max_facts == 3
    overridden = load_config(backend="lte_aligned", overrides=["backend.max_facts=1"])
    assert overridden.backend.max_facts == 1  # type: ignore[attr-defined]


def test_an_adapter_serves_only_the_template_it_was_trained_with(
    tiny_lm: LanguageModel, adapter_dir: Path, tmp_path: Path
) -> None:
    dialog = _copy_with_training_info(adapter_dir, tmp_path / "dialog", {"config": {"template": "dialog"}})
    with pytest.raises(ConfigError, match=r"trained with template 'dialog'.*backend\.template=dialog"):
        LteBackend(LteConfig(adapter=str(dialog)), tiny_lm)
    assert LteBackend(LteConfig(adapter=str(dialog), template="dialog"), tiny_lm).config.template == "dialog"
    # Without a recorded template the adapter predates it: it was trained on LTE's.
    (dialog / "training.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ConfigError, match="trained with template 'lte'"):
        LteBackend(LteConfig(adapter=str(dialog), template="dialog"), tiny_lm)
