"""Preset loading and validation: every bad input names the file, the key and the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from grpo_tui.engine.config import (
    PresetError,
    config_from_dict,
    describe_fields,
    list_presets,
    load_config,
    load_resolved,
    parse_override,
    preset_dir,
)


def write(tmp_path, text: str, name: str = "p.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_shipped_presets_found_from_package():
    assert {"tiny", "cpu-demo"} <= set(list_presets())
    assert (preset_dir() / "tiny.toml").is_file()


def test_tiny_preset_loads_typed():
    cfg = load_config("tiny")
    assert cfg.preset.name == "tiny" and cfg.model.name == "tiny-random"
    assert isinstance(cfg.train.learning_rate, float) and cfg.train.num_generations == 4
    assert cfg.reward_weights()["correctness"] == 1.0


@pytest.mark.parametrize(
    "text, expect",
    [
        ("[train]\nlearnig_rate = 1e-5\n", ["[train]", "learnig_rate", "Did you mean 'learning_rate'"]),
        ("[trian]\nmax_steps = 1\n", ["trian", "Did you mean 'train'"]),
        ('[train]\nmax_steps = "ten"\n', ["max_steps", "expected integer"]),
        ("[train]\nnum_generations = 1\n", ["num_generations", "at least 2"]),
        ("[train]\nnum_generations = 3\nper_device_train_batch_size = 8\n", ["not divisible", "num_generations (3)"]),
        ('[train]\nloss_type = "ppo"\n', ["loss_type", "'grpo'", "'dapo'"]),
        ("[model]\nload_in_4bit = true\n", ["load_in_4bit", "lora = true"]),
        ('[data]\nsource = "file"\n', ["data_files"]),
        ('[rewards]\ncorrectness = "high"\n', ["correctness", "weight must be a number"]),
        ("[train\n", ["not valid TOML"]),
        ("[train]\nbf16 = 1\n", ["bf16", "true/false"]),
        (
            "[train]\nshare_prompt_prefix = true\n[distributed]\nnum_processes = 2\n",
            ["share_prompt_prefix", "one process", "num_processes = 1"],
        ),
        (
            "[train]\nshare_prompt_prefix = true\n[model]\ngradient_checkpointing = true\n",
            ["share_prompt_prefix", "gradient checkpointing", "gradient_checkpointing = false"],
        ),
        (
            '[train]\nstop_strings = ["</answer>"]\nuse_vllm = true\n',
            ["stop_strings", "transformers generation only", "use_vllm = false"],
        ),
        (
            '[train]\nstop_strings = ["</answer>"]\nuse_transformers_paged = true\n',
            ["stop_strings", "use_transformers_paged = false"],
        ),
        ('[train]\nstop_strings = [""]\n', ["stop_strings", "non-empty string"]),
    ],
)
def test_bad_presets_name_file_key_and_fix(tmp_path, text, expect):
    path = write(tmp_path, 'extends = "tiny"\n' + text)
    with pytest.raises(PresetError) as e:
        load_config(path)
    msg = str(e.value)
    assert path in msg
    for piece in expect:
        assert piece in msg, (piece, msg)


def test_unknown_and_missing_presets():
    with pytest.raises(PresetError, match="Did you mean 'tiny'"):
        load_config("tinny")
    with pytest.raises(PresetError, match="not found"):
        load_config("/nonexistent/x.toml")


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        "tiny", ["train.learning_rate=3e-4", "train.max_steps=7", "prompt.format=think", "rewards.think_format=0.5"]
    )
    assert cfg.train.learning_rate == 3e-4 and cfg.train.max_steps == 7 and cfg.prompt.format == "think"
    assert cfg.reward_weights()["think_format"] == 0.5
    with pytest.raises(PresetError, match="max_stepz"):
        load_config("tiny", ["train.max_stepz=3"])
    with pytest.raises(PresetError, match="section.key"):
        parse_override("max_steps=3")


def test_extends_merges_and_rewards_replace(tmp_path):
    path = write(tmp_path, 'extends = "tiny"\n[train]\nlearning_rate = 1e-3\n[rewards]\nxmlcount = 2.0\n')
    cfg = load_config(path)
    assert cfg.train.learning_rate == 1e-3 and cfg.train.num_generations == 4  # inherited
    assert cfg.rewards == {"xmlcount": 2.0}  # a preset's rewards are exactly what it lists


def test_reward_tables_carry_options():
    cfg = config_from_dict({"rewards": {"length_penalty": {"weight": 0.5, "min_tokens": 10}}}, "x")
    assert cfg.reward_weights() == {"length_penalty": 0.5}
    assert cfg.reward_options() == {"length_penalty": {"min_tokens": 10}}


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tiny")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    back = load_resolved(tmp_path / "config.json", ["train.max_steps=9"])
    assert back.train.max_steps == 9 and back.model == cfg.model and back.source == cfg.source


def test_every_field_documented():
    rows = describe_fields()
    assert len(rows) > 50 and all(help_ for *_, help_ in rows)


def test_loss_type_choices_are_the_installed_trls():
    """The list comes from TRL's own help for GRPOConfig.loss_type, so values TRL added are accepted."""
    import dataclasses

    import trl

    from grpo_tui.engine.config.trl_meta import TrlChoices, choices_in_help

    help_ = {f.name: f.metadata["help"] for f in dataclasses.fields(trl.GRPOConfig)}["loss_type"]
    listed = TrlChoices("GRPOConfig", "loss_type").values()
    assert listed == choices_in_help(help_) and {"grpo", "dapo", "luspo", "vespo"} <= set(listed)
    for value in listed:
        assert load_config("tiny", [f'train.loss_type="{value}"']).train.loss_type == value


def test_choices_are_read_from_both_help_styles():
    from grpo_tui.engine.config.trl_meta import choices_in_help

    assert choices_in_help("Supported values are 'a', 'b_c', and 'd'. 'a': uses x='y'.") == ("a", "b_c", "d")
    assert choices_in_help(
        "Supported values are: `True` or `group'` (default): within. `'batch'`: across. "
        "`False` or `'none'`: none (see `scale_rewards`)."
    ) == ("group", "batch", "none")
    assert choices_in_help("No list here.") == ()


def test_choices_check_does_not_import_trl():
    from support.processes import run_cli

    proc = run_cli(
        [
            "-c",
            "import sys; from grpo_tui.engine.config import load_config, PresetError\n"
            "load_config('tiny', ['train.loss_type=\"vespo\"'])\n"
            "try: load_config('tiny', ['train.loss_type=\"ppo\"'])\n"
            "except PresetError as e: print('vespo' in str(e), 'trl' in sys.modules)",
        ],
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "False"], proc.stdout + proc.stderr


def test_ranges_are_declared_on_the_fields():
    import dataclasses

    from grpo_tui.engine.config import SECTIONS, Range

    ranged = {
        (s, f.name): f.metadata["range"]
        for s, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if "range" in f.metadata
    }
    assert ranged[("train", "learning_rate")] == Range(0.0, 1.0, open_low=True)
    assert ranged[("distributed", "main_process_port")] == Range(1, 65535)
    assert all(isinstance(r, Range) for r in ranged.values()) and len(ranged) > 30


@pytest.mark.parametrize(
    "override, bound",
    [
        ("train.learning_rate=0", "in (0, 1]"),
        ("train.top_p=1.5", "(0, 1]"),
        ("model.lora_dropout=1.5", "[0, 1]"),
        ("sft.warmup_ratio=-0.1", "[0, 1]"),
        ("distributed.main_process_port=70000", "[1, 65535]"),
        ("train.save_total_limit=0", "at least 1"),
    ],
)
def test_out_of_range_values_name_the_range(override, bound):
    with pytest.raises(PresetError) as e:
        load_config("tiny", [override])
    assert "out of range" in str(e.value) and bound in str(e.value), str(e.value)


def test_shared_prefix_refuses_lora_dropout():
    base = ["train.share_prompt_prefix=true", "model.lora=true"]
    with pytest.raises(PresetError) as e:
        load_config("tiny", base + ["model.lora_dropout=0.1"])
    assert "--set model.lora_dropout=0" in str(e.value) and "share_prompt_prefix off" in str(e.value)
    assert load_config("tiny", base + ["model.lora_dropout=0"]).train.share_prompt_prefix
    assert load_config("tiny", ["train.share_prompt_prefix=true", "model.lora_dropout=0.1"])  # no LoRA: no dropout


def test_the_config_package_keeps_one_job_per_module():
    """schema, validation and loading are separate modules; the package re-exports the public names."""
    import grpo_tui.engine.config as config
    from grpo_tui.engine.config import loading, schema, validation

    assert config.Config is schema.Config and config.validate is validation.validate
    assert config.load_config is loading.load_config
    for name in config.__all__:
        assert hasattr(config, name), name


def test_a_preset_with_a_trl_field_loads_without_importing_trl():
    code = (
        "import sys; from grpo_tui.engine.config import load_config; "
        "c = load_config('gpu24-qwen3-06b-nothink'); "
        "assert c.train.trl_extra['chat_template_kwargs'] == {'enable_thinking': False}; "
        "print('trl' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_trl_field_types_read_from_source_agree_with_the_installed_classes():
    import dataclasses
    import typing

    import trl

    from grpo_tui.engine.config.validation import _trl_type_from_source

    for cls_name in ("GRPOConfig", "SFTConfig"):
        cls = getattr(trl, cls_name)
        hints = typing.get_type_hints(cls)
        checked = 0
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            tp, choices = _trl_type_from_source(cls_name, f.name)
            if tp is None:
                continue
            checked += 1
            assert tp == hints[f.name], (cls_name, f.name)
            assert (choices or None) == (list(f.metadata["choices"]) if f.metadata.get("choices") else None)
        assert checked > 100, (cls_name, checked)


@pytest.mark.parametrize(
    "sets, clash",
    [
        (["train.share_prompt_prefix=true", "model.lora_dropout=0"], "share_prompt_prefix"),
        (["train.share_prompt_prefix=false", "train.use_cpu=true"], "fast_cpu_decode"),
    ],
)
def test_a_cache_implementation_beside_a_cache_of_the_engines_is_refused(sets, clash):
    with pytest.raises(PresetError, match=f"cache_implementation .* can't be used with {clash}"):
        load_config("tiny", ['train.cache_implementation="static"', *sets])
    ok = [*sets[:1], 'train.cache_implementation="static"', "train.fast_cpu_decode=false"]
    if clash == "share_prompt_prefix":
        ok = ["train.share_prompt_prefix=false", "train.fast_cpu_decode=false", 'train.cache_implementation="static"']
    load_config("tiny", ok)
