"""Presets: TOML files (or TRL YAML recipes) validated into a typed config.

Loading is strict: an unknown key, a wrong type or an impossible combination raises PresetError naming the file,
the key and what is allowed, before anything is written.

    schema.py       the dataclasses: every knob with its default, help, choices and range
    trl_meta.py     what the installed TRL's sources say about a field (choice lists), without importing trl
    passthrough.py  [train]/[sft] fields taken from trl.GRPOConfig / trl.SFTConfig
    validation.py   coercion, choices, ranges and cross-field checks
    loading.py      preset lookup, TOML reading with `extends`, --set overrides, a run's config.json
    recipe.py       TRL YAML recipes in, and a preset written out as one
"""

from .loading import RECIPE_SUFFIXES, find_preset, list_presets, load_config, load_resolved, parse_override, preset_dir
from .passthrough import ENGINE_OWNED, describe_all_fields, trl_fields
from .schema import (
    SECTIONS,
    TRL_PASSTHROUGH,
    Config,
    CurriculumConfig,
    DataConfig,
    DistributedConfig,
    EvalConfig,
    ModelConfig,
    PresetError,
    PresetInfo,
    PromptConfig,
    Range,
    SftConfig,
    TrainConfig,
    describe_fields,
)
from .validation import config_from_dict, validate

__all__ = [
    "ENGINE_OWNED",
    "RECIPE_SUFFIXES",
    "SECTIONS",
    "TRL_PASSTHROUGH",
    "Config",
    "CurriculumConfig",
    "DataConfig",
    "DistributedConfig",
    "EvalConfig",
    "ModelConfig",
    "PresetError",
    "PresetInfo",
    "PromptConfig",
    "Range",
    "SftConfig",
    "TrainConfig",
    "config_from_dict",
    "describe_all_fields",
    "describe_fields",
    "find_preset",
    "list_presets",
    "load_config",
    "load_resolved",
    "parse_override",
    "preset_dir",
    "trl_fields",
    "validate",
]
