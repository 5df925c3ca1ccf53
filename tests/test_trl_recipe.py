"""`grpo-tui --config recipe.yaml`: a TRL YAML recipe becomes a preset, key by key, or is refused key by key."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from support.paths import REPO, SHARED_DATA
from support.processes import run_grpo_tui

from grpo_tui.engine.config import ENGINE_OWNED, PresetError, TrainConfig, list_presets, load_config
from grpo_tui.engine.config.recipe import RULES, read_recipe, recipe_classes, reward_spec, to_trl_yaml

GSM8K = str((SHARED_DATA / "gsm8k").resolve())


def recipe(tmp_path, body: dict, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def _fields(cls_name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(recipe_classes()[cls_name]) if f.init}


def test_every_non_training_key_of_the_installed_trl_has_a_rule():
    """A TRL upgrade that adds a ScriptArguments/ModelConfig key fails here until the key is decided."""
    for cls_name in ("ScriptArguments", "ModelConfig", "DatasetMixtureConfig"):
        assert _fields(cls_name) <= set(RULES), (cls_name, _fields(cls_name) - set(RULES))
    assert set(ENGINE_OWNED["train"]) <= set(RULES)  # the GRPOConfig fields a [train] section refuses


def test_every_rule_names_a_key_of_the_installed_trl():
    known = set().union(*(_fields(c) for c in recipe_classes()))
    assert set(RULES) <= known, set(RULES) - known
    assert all(r.action in ("map", "default", "ignore", "refuse", "special") for r in RULES.values())
    assert all(r.target for r in RULES.values() if r.action == "map")


def test_docs_tables_are_generated_from_the_code():
    from grpo_tui.engine.config.reference import TABLES, generated_parts

    page = (REPO / "docs" / "presets.md").read_text()
    parts = generated_parts(page)
    assert set(parts) == set(TABLES)
    for name, make in TABLES.items():
        assert parts[name] == make().strip(), "regenerate: python -m grpo_tui.engine.config.reference docs/presets.md"
    assert "`model_name_or_path` | ModelConfig | -> [model] name" in page


def test_a_trl_recipe_maps_onto_a_preset(tmp_path):
    path = recipe(
        tmp_path,
        {
            "model_name_or_path": "tiny-random",
            "dataset_name": GSM8K,
            "dataset_train_split": "test",
            "reward_funcs": ["accuracy_reward", "think_format_reward", "my_rewards.brevity", "correctness"],
            "reward_weights": [1.0, 0.5, 0.2, 2],
            "use_peft": True,
            "lora_r": 8,
            "lora_target_modules": "all-linear",
            "learning_rate": "1e-5",
            "num_generations": 4,
            "max_steps": 10,
            "warmup_steps": 2,
            "loss_type": "vespo",
            "importance_sampling_level": "sequence",
            "gradient_checkpointing": True,
            "output_dir": "out",
            "logging_steps": 5,
            "save_strategy": "no",
            "dtype": "float32",
        },
    )
    cfg = load_config(str(path))
    assert cfg.model.name == "tiny-random" and cfg.model.lora and cfg.model.lora_r == 8
    assert cfg.model.lora_target_modules == ["all-linear"] and cfg.model.gradient_checkpointing
    assert cfg.data.source == "file" and cfg.data.data_files == [f"{GSM8K}/test.jsonl"]
    assert cfg.data.question_field == cfg.data.answer_field == "auto"
    assert cfg.rewards == {
        "trl.rewards:accuracy_reward": 1.0,
        "trl.rewards:think_format_reward": 0.5,
        "my_rewards:brevity": 0.2,
        "correctness": 2.0,
    }
    t = cfg.train
    assert t.learning_rate == 1e-5 and t.num_generations == 4 and t.max_steps == 10 and t.loss_type == "vespo"
    assert t.warmup_ratio == 0.2 and t.save_steps == 0 and t.save_final
    assert t.trl_extra == {"importance_sampling_level": "sequence"}
    notes = read_recipe(path).notes
    assert any(n.startswith("output_dir ignored") for n in notes) and any("logging_steps" in n for n in notes)


def test_keys_left_out_take_the_installed_trls_defaults(tmp_path):
    from trl import GRPOConfig

    trl_defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    cfg = load_config(str(recipe(tmp_path, {"model_name_or_path": "tiny-random", "max_steps": 3})))
    for name in ("learning_rate", "lr_scheduler_type", "max_grad_norm", "adam_beta2", "max_completion_length"):
        assert getattr(cfg.train, name) == trl_defaults[name], name
    assert cfg.train.max_steps == 3 and cfg.train.warmup_ratio == 0.0
    assert cfg.data.source == "synthetic"  # no dataset_name: the built-in problems, with a note
    assert TrainConfig().learning_rate != trl_defaults["learning_rate"]  # the test would prove nothing otherwise


@pytest.mark.parametrize(
    "body, expect",
    [
        ({"resume_from_checkpoint": "ckpt"}, ["resume_from_checkpoint is refused", "--resume"]),
        ({"datasets": [{"path": "x"}]}, ["datasets is refused", "dataset_name"]),
        (
            {"reward_model_name_or_path": "org/rm", "reward_weights": [1.0, 2.0]},
            ["reward_weights", "reward model first"],
        ),
        ({"use_dora": True}, ["use_dora = true is refused", "plain LoRA"]),
        ({"load_in_8bit": True}, ["load_in_8bit", "load_in_4bit"]),
        ({"model_revision": "v2"}, ["model_revision", "download that revision"]),
        ({"dataset_streaming": True}, ["dataset_streaming", "up front"]),
        ({"max_steps": -1}, ["max_steps = -1 is refused", "positive"]),
        ({"num_train_epochs": 3, "max_steps": None}, ["num_train_epochs is refused", "max_steps"]),
        ({"save_strategy": "epoch"}, ['save_strategy = "epoch" is refused']),
        ({"data_seed": 3, "seed": 4}, ["data_seed = 3 is refused", "set seed"]),
        ({"reward_funcs": ["get_soft_overlong_punishment"]}, ["get_soft_overlong_punishment", "factory"]),
        ({"reward_funcs": ["no_such_reward"]}, ["no_such_reward", "accuracy_reward", "dotted path"]),
        ({"reward_funcs": ["accuracy_reward"], "reward_weights": [1, 2]}, ["reward_weights", "one number per"]),
        ({"dataset_name": GSM8K, "dataset_train_split": "validation"}, ["validation", "train, test"]),
        ({"dataset_name": GSM8K, "dataset_config": "main"}, ["dataset_config is refused", "local data"]),
        ({"learnig_rate": 1e-6}, ["unknown key 'learnig_rate'", "Did you mean 'learning_rate'"]),
        ({"loss_type": "ppo"}, ["loss_type", "'vespo'"]),
        ({"num_generations": "many"}, ["num_generations", "expected integer"]),
    ],
)
def test_each_refused_key_names_the_file_key_and_reason(tmp_path, body, expect):
    body = {k: v for k, v in {"model_name_or_path": "tiny-random", "max_steps": 2, **body}.items() if v is not None}
    path = recipe(tmp_path, body)
    with pytest.raises(PresetError) as e:
        load_config(str(path))
    assert str(path) in str(e.value)
    for piece in expect:
        assert piece in str(e.value), (piece, str(e.value))


def test_reward_registry_is_read_from_the_installed_trl_script():
    import trl.rewards

    from grpo_tui.engine.config.recipe import trl_reward_registry

    registry = trl_reward_registry()
    assert {"accuracy_reward", "think_format_reward"} <= {n for n, plain in registry.items() if plain}
    assert registry.get("get_soft_overlong_punishment") is False  # built by a factory call in trl grpo
    assert all(callable(getattr(trl.rewards, name)) for name in registry)


def test_a_reward_model_comes_first_as_trl_grpo_puts_it(tmp_path):
    path = recipe(
        tmp_path,
        {"reward_model_name_or_path": "/models/rm", "reward_funcs": ["accuracy_reward"], "reward_weights": [0.1, 1]},
    )
    cfg = load_config(str(path))
    assert list(cfg.rewards.items()) == [("model:/models/rm", 0.1), ("trl.rewards:accuracy_reward", 1.0)]
    out = yaml.safe_load(to_trl_yaml(cfg))
    assert out["reward_model_name_or_path"] == "/models/rm" and out["reward_weights"] == [0.1, 1.0]


def test_reward_names_become_module_specs():
    assert reward_spec("accuracy_reward", "r") == "trl.rewards:accuracy_reward"
    assert reward_spec("pkg.sub.func", "r") == "pkg.sub:func"
    assert reward_spec("soft_format", "r") == "soft_format"


def test_a_dotted_reward_in_the_current_directory_becomes_its_file(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("def f(completions, **kw):\n    return [1.0 for _ in completions]\n")
    monkeypatch.chdir(tmp_path)
    assert reward_spec("my_rewards.f", "r") == f"{tmp_path / 'my_rewards.py'}:f"


def test_recipe_refusal_exits_2_and_writes_nothing(tmp_path):
    path = recipe(tmp_path, {"model_name_or_path": "tiny-random", "resume_from_checkpoint": True})
    run_dir = tmp_path / "run"
    proc = run_grpo_tui(
        ["--no-ui", "--config", str(path), "--run-dir", str(run_dir)],
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "resume_from_checkpoint is refused" in proc.stderr and str(path) in proc.stderr
    assert not run_dir.exists()


def test_recipe_trains_headless_to_a_finished_run(tmp_path):
    """The recipe as TRL's docs write one, with TRL's own reward function, runs through the CLI."""
    path = tmp_path / "recipe.yaml"
    path.write_text(f"""\
# trl grpo --config recipe.yaml
model_name_or_path: tiny-random
dataset_name: {GSM8K}
dataset_train_split: train
reward_funcs:
  - think_format_reward
output_dir: grpo-tiny
learning_rate: 1e-4
per_device_train_batch_size: 8
num_generations: 4
max_completion_length: 16
max_steps: 2
logging_steps: 1
save_strategy: "no"
dtype: float32
""")
    run_dir = tmp_path / "run"
    proc = run_grpo_tui(
        ["--no-ui", "--config", str(path), "--run-dir", str(run_dir)],
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "note: output_dir ignored" in proc.stdout
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
    assert events[0]["config"]["rewards"] == {"trl.rewards:think_format_reward": 1.0}
    assert [e["state"] for e in events if e["type"] == "state"][-1] == "finished"
    assert not [e for e in events if e["type"] == "reward_failure"]  # TRL's function is called as TRL calls it


@pytest.mark.parametrize("name", list_presets())
def test_preset_as_trl_yaml_reads_back_the_same(tmp_path, name):
    cfg = load_config(name)
    text = to_trl_yaml(cfg)
    back = load_config(str(recipe(tmp_path, yaml.safe_load(text))))
    grpo = _fields("GRPOConfig")
    for f in dataclasses.fields(TrainConfig):
        if f.name in grpo or f.name in ("warmup_ratio", "trl_extra", "save_final"):
            assert getattr(back.train, f.name) == getattr(cfg.train, f.name), f.name
    for key in ("name", "dtype", "lora", "gradient_checkpointing"):
        assert getattr(back.model, key) == getattr(cfg.model, key), key
    if cfg.model.lora:
        assert (back.model.lora_r, back.model.lora_target_modules) == (cfg.model.lora_r, cfg.model.lora_target_modules)


def test_presets_show_trl_yaml_from_the_cli():
    proc = run_grpo_tui(["presets", "--show", "cpu-demo", "--format", "trl-yaml"], timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["model_name_or_path"] == "smollm2-135m-instruct" and data["use_peft"] is True
    assert "# " in proc.stdout and "share_prompt_prefix" in proc.stdout  # what a recipe can't carry, as comments
