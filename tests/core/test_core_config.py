"""Config loading: defaults, bundled YAML, strict keys, coercion, the backend registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recall.backends import get_backend, register_backend, registered_backends
from recall.backends.grace import GraceConfig
from recall.backends.recipe import RecipeConfig
from recall.config import CONFIG_DIR, config_from_dict, load_config
from recall.errors import ConfigError, UnknownBackendError


def test_defaults_load_with_the_calibrated_threshold() -> None:
    config = load_config()
    assert config.model.name == "smollm2-135m"
    assert isinstance(config.backend, RecipeConfig)  # the best measured backend for the default model
    assert 0.0 < load_config(backend="lte").sentinel.min_cosine < 1.0


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("backend/*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_backend_yaml_loads(path: Path) -> None:
    # A preset YAML (lte_aligned) names the registered backend it configures; others are named by file.
    declared = yaml.safe_load(path.read_text()).get("name", path.stem)
    assert load_config(backend=path.stem).backend.name == declared


def test_unknown_key_names_close_matches(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sentinel:\n  min_cosin: 0.4\n")
    with pytest.raises(ConfigError, match="min_cosine"):
        load_config(bad)


def test_scientific_notation_is_coerced_and_wrong_types_fail() -> None:
    assert load_config(overrides=["sentinel.min_cosine=5e-1"]).sentinel.min_cosine == 0.5
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_config(overrides=["retrieval.top_k=many"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(overrides=["conflict.policy=merge"])


def test_validation_and_malformed_overrides() -> None:
    with pytest.raises(ConfigError, match="min_cosine"):
        load_config(overrides=["sentinel.min_cosine=2"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(overrides=["sentinel.min_cosine"])


def test_unknown_backend_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownBackendError, match="lte"):
        load_config(backend="nope")
    assert "lte" in registered_backends()


def test_registry_rejects_bad_and_duplicate_names() -> None:
    spec = get_backend("lte")
    with pytest.raises(ConfigError):
        register_backend(type("Bad", (spec.cls,), {"name": "Bad-Name"}))
    with pytest.raises(ConfigError, match="already"):
        register_backend(type("Other", (spec.cls,), {"name": "lte"}))


def test_config_round_trips_through_a_plain_dict() -> None:
    config = load_config(overrides=["retrieval.top_k=2"])
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("preset", ["grace", "grace_retrieval"])
def test_a_preset_has_values_for_another_model_and_the_user_still_wins(preset: str) -> None:
    data = yaml.safe_load((CONFIG_DIR / "backend" / f"{preset}.yaml").read_text())
    values = data["models"]["gemma3-270m"]
    backend = load_config(backend=preset, overrides=["model.name=gemma3-270m"]).backend
    assert {key: getattr(backend, key) for key in values} == values
    default = load_config(backend=preset).backend
    mine = load_config(backend=preset, overrides=["model.name=gemma3-270m", "backend.layer=3"]).backend
    assert isinstance(default, GraceConfig)
    assert isinstance(mine, GraceConfig)
    assert default.layer == data["layer"]  # the default model keeps the preset's own values
    assert mine.layer == 3
