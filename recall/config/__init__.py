"""Configuration: recall's sections and presets (schema.py) over a generic strict loader (loader.py)."""

from recall.config.schema import (
    CONFIG_DIR,
    ConflictConfig,
    ConflictPolicy,
    EncoderConfig,
    KeyKind,
    ModelConfig,
    RecallConfig,
    RetrievalConfig,
    SentinelConfig,
    StoreConfig,
    config_from_dict,
    load_config,
    preset_names,
)

__all__ = [
    "CONFIG_DIR",
    "ConflictConfig",
    "ConflictPolicy",
    "EncoderConfig",
    "KeyKind",
    "ModelConfig",
    "RecallConfig",
    "RetrievalConfig",
    "SentinelConfig",
    "StoreConfig",
    "config_from_dict",
    "load_config",
    "preset_names",
]
