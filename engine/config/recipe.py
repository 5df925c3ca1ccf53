"""TRL YAML recipes: the file `trl grpo --config recipe.yaml` reads, turned into a preset, and a preset written as one.

`trl grpo` reads one YAML into four dataclasses: its script arguments (dataset, reward functions), ModelConfig,
DatasetMixtureConfig and GRPOConfig. Their field lists are read from the installed TRL, never copied. Each key
either maps onto a preset key, is accepted with a note saying why it has no effect here, or is refused with the
reason; RULES holds that decision for every key that is not simply a [train] field, and docs/presets.md lists it
(tests/test_trl_recipe.py keeps the two in step with the installed TRL).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .passthrough import ENGINE_OWNED
from .schema import Config, PresetError, TrainConfig, field_default

# YAML 1.1 (PyYAML) reads 1e-6 as a string; TRL's parser converts it with the field's type. So do we.
_SCIENTIFIC = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")
# grpo-tui keeps its own values for these [train] fields when a recipe leaves them out: TRL's max_steps (-1)
# means "count epochs", which grpo-tui does not do, and TRL's tracker project is transformers' generic default.
_OWN_DEFAULTS = ("max_steps", "project")


@dataclass(frozen=True)
class Rule:
    """What a recipe key becomes. action: map (to `target`), default (accepted only at TRL's default value),
    ignore (accepted, no effect here, printed as a note), refuse, or special (handled in code; `reason` says how)."""

    action: str
    reason: str = ""
    target: str = ""


_HUB_OR_LOCAL = (
    "a local file or directory (datasets' split patterns pick the split's files) -> [data] source = "
    '"file", data_files; anything else is a hub id -> [data] source = "hub", dataset'
)
_LOG = "the engine logs every step to events.jsonl (and to the trackers in report_to)"

RULES: dict[str, Rule] = {
    # trl grpo's script arguments (ScriptArguments + GRPOScriptArguments)
    "dataset_name": Rule("special", _HUB_OR_LOCAL + "; question/answer fields 'auto'"),
    "dataset_config": Rule("map", "hub datasets only", "data.dataset_config"),
    "dataset_train_split": Rule("special", "[data] split (hub); for local data, the split whose files are used"),
    "dataset_test_split": Rule("ignore", "held-out evaluation during training is set in [eval] (grpo-tui eval)"),
    "dataset_streaming": Rule("default", "the engine reads the rows up front to filter, balance and count them"),
    "ignore_bias_buffers": Rule("ignore", "a DDP workaround the engine's own distributed setup does not need"),
    "reward_model_name_or_path": Rule(
        "special",
        '[rewards] "model:ID" (a sequence-classification reward model), first, as trl grpo puts it first: '
        "reward_weights counts it",
    ),
    "reward_funcs": Rule(
        "special",
        '[rewards]: a TRL registry name -> "trl.rewards:NAME"; a dotted path '
        '"pkg.mod.func" -> "pkg.mod:func"; a grpo-tui built-in name as is',
    ),
    # trl.ModelConfig
    "model_name_or_path": Rule(
        "map", "hub id, local directory or an offline name such as smollm2-135m-instruct", "model.name"
    ),
    "model_revision": Rule("default", "download that revision into a directory and give its path"),
    "dtype": Rule("map", "", "model.dtype"),
    "attn_implementation": Rule("map", "", "model.attn_implementation"),
    "use_peft": Rule("map", "", "model.lora"),
    "lora_r": Rule("map", "", "model.lora_r"),
    "lora_alpha": Rule("map", "", "model.lora_alpha"),
    "lora_dropout": Rule("map", "", "model.lora_dropout"),
    "lora_target_modules": Rule(
        "map",
        "a single name (all-linear) becomes a one-entry list; unset keeps grpo-tui's list",
        "model.lora_target_modules",
    ),
    "lora_target_parameters": Rule("default", "grpo-tui adapts modules only (lora_target_modules)"),
    "lora_modules_to_save": Rule("default", "grpo-tui trains the LoRA adapters only"),
    "lora_task_type": Rule("default", "grpo-tui trains causal language models"),
    "use_rslora": Rule("default", "grpo-tui's LoRA uses alpha / r scaling"),
    "use_dora": Rule("default", "grpo-tui's LoRA is plain LoRA"),
    "load_in_8bit": Rule("default", "8-bit loading is not offered; use load_in_4bit (QLoRA)"),
    "load_in_4bit": Rule("map", "", "model.load_in_4bit"),
    "bnb_4bit_quant_type": Rule("default", "grpo-tui loads 4-bit weights as NF4"),
    "use_bnb_nested_quant": Rule("ignore", "grpo-tui's 4-bit loading always quantizes the quantization constants"),
    "bnb_4bit_quant_storage": Rule("default", "grpo-tui keeps bitsandbytes' storage type"),
    # trl.DatasetMixtureConfig
    "datasets": Rule("refuse", "dataset mixtures are not supported; give one dataset_name"),
    "streaming": Rule("default", "the engine reads the rows up front to filter, balance and count them"),
    "test_split_size": Rule("ignore", "held-out evaluation is set in [eval]"),
    # GRPOConfig fields the engine sets itself (passthrough.ENGINE_OWNED) or counts differently
    "output_dir": Rule(
        "ignore", "the run is written to --run-dir (default runs/TIME-NAME), checkpoints to RUN_DIR/checkpoints"
    ),
    "logging_steps": Rule("ignore", _LOG),
    "logging_strategy": Rule("ignore", _LOG),
    "disable_tqdm": Rule("ignore", "the engine prints its own step report"),
    "reward_weights": Rule("special", "one weight per reward_funcs entry, in order -> the weights in [rewards]"),
    "warmup_steps": Rule(
        "special", "a float below 1 is a ratio -> [train] warmup_ratio; N steps -> warmup_ratio = N / max_steps"
    ),
    "data_seed": Rule("special", "accepted unset or equal to seed: grpo-tui uses one seed for the run"),
    "save_strategy": Rule(
        "special",
        '"steps" keeps save_steps; "no" -> save_steps = 0 (the final model is '
        'still saved, as trl grpo saves it); "epoch"/"best" are refused',
    ),
    "gradient_checkpointing": Rule("map", "", "model.gradient_checkpointing"),
    "activation_checkpointing": Rule(
        "map", "transformers' new name for gradient_checkpointing", "model.gradient_checkpointing"
    ),
    "resume_from_checkpoint": Rule("refuse", "start the run, then continue it with grpo-tui --resume --run-dir DIR"),
    "vllm_server_host": Rule("map", "", "distributed.vllm_server_host"),
    "vllm_server_port": Rule("map", "", "distributed.vllm_server_port"),
    "vllm_group_port": Rule("map", "", "distributed.vllm_group_port"),
    "vllm_server_timeout": Rule("map", "", "distributed.vllm_server_timeout"),
    "max_steps": Rule(
        "special", "-> [train] max_steps; must be positive (grpo-tui counts optimizer steps); unset: grpo-tui's default"
    ),
    "num_train_epochs": Rule("special", "accepted beside max_steps (which wins, as in transformers), refused alone"),
}


@dataclass
class Recipe:
    """A recipe read into a preset (the dict a TOML preset would give) and the notes to show its user."""

    preset: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@functools.cache
def recipe_classes() -> dict[str, type]:
    """The dataclasses `trl grpo --config` fills, from the installed TRL, by the name docs use for them."""
    import trl
    from trl.scripts.grpo import GRPOScriptArguments

    return {
        "ScriptArguments": GRPOScriptArguments,
        "ModelConfig": trl.ModelConfig,
        "DatasetMixtureConfig": trl.DatasetMixtureConfig,
        "GRPOConfig": trl.GRPOConfig,
    }


def _trl_fields(cls_name: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(recipe_classes()[cls_name]) if f.init}


@functools.cache
def trl_reward_registry() -> dict[str, bool]:
    """trl grpo's reward registry: name -> True for a plain function, False for one built by a factory call.

    Read from the installed trl/scripts/grpo.py (the dict literal `reward_funcs_registry` in main()), the
    names `trl grpo --config` accepts; trl.rewards' exports when that source can't be read.
    """
    import trl.scripts.grpo as script

    try:
        tree = ast.parse(Path(script.__file__).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, TypeError):
        tree = None
    for node in ast.walk(tree) if tree else ():
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(isinstance(t, ast.Name) and t.id == "reward_funcs_registry" for t in node.targets)
        ):
            return {
                k.value: isinstance(v, ast.Name)
                for k, v in zip(node.value.keys, node.value.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
    import trl.rewards

    return {name: True for name in getattr(trl.rewards, "__all__", ())}


def reward_spec(name: Any, where: str) -> str:
    """A reward_funcs entry as a grpo-tui [rewards] spec."""
    from grpo_tui.engine.rewards.builtin import REWARDS

    if not isinstance(name, str) or not name.strip():
        raise PresetError(f"{where}: reward_funcs entry {name!r}: give a TRL reward name or a dotted import path.")
    registry = trl_reward_registry()
    if name in registry:
        if not registry[name]:
            raise PresetError(
                f"{where}: reward_funcs entry {name!r} is refused: trl grpo builds it by calling a "
                "factory with fixed arguments; write a reward function that calls "
                f"trl.rewards.{name}(...) with your own and give its dotted path."
            )
        return f"trl.rewards:{name}"
    if name in REWARDS:
        return name
    if "." in name and all(part.isidentifier() for part in name.split(".")):
        module, func = name.rsplit(".", 1)
        # trl grpo imports it with the current directory first on sys.path; the engine never puts the current
        # directory on its path, so a module that is a file there is named by its path (and checked as one)
        local = Path.cwd().joinpath(*module.split(".")).with_suffix(".py")
        if local.is_file():
            return f"{local}:{func}"
        return f"{module}:{func}"
    raise PresetError(
        f"{where}: reward_funcs entry {name!r} is unknown: give one of {', '.join(registry)} "
        f"(TRL), a grpo-tui built-in ({', '.join(REWARDS)}) or a dotted path such as my_module.my_func."
    )


def _yaml(value: Any) -> str:
    """A value as the recipe's writer wrote it (true, "epoch", [1, 2]), for messages."""
    return json.dumps(value, default=str)


def _scalar(value: Any) -> Any:
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    return value


def _trl_default(cls_name: str, key: str) -> Any:
    return field_default(_trl_fields(cls_name)[key])


def _owner(key: str) -> str | None:
    for cls_name in ("ScriptArguments", "ModelConfig", "DatasetMixtureConfig", "GRPOConfig"):
        if key in _trl_fields(cls_name):
            return cls_name
    return None


def _set(preset: dict[str, Any], target: str, value: Any) -> None:
    section, key = target.split(".")
    preset.setdefault(section, {})[key] = value


def _base(name: str) -> dict[str, Any]:
    """Keys a recipe leaves out take the installed TRL's default wherever grpo-tui has the same knob,
    so the recipe trains as it would under `trl grpo`."""
    preset: dict[str, Any] = {
        "preset": {"name": name, "description": f"TRL recipe {name}"},
        "data": {"question_field": "auto", "answer_field": "auto"},
        "train": {"warmup_ratio": 0.0},  # TRL's warmup_steps defaults to 0
    }
    own = typing.get_type_hints(TrainConfig)
    for key, f in _trl_fields("GRPOConfig").items():
        default = field_default(f)
        if key not in own or key in _OWN_DEFAULTS:
            continue
        if default is not None or type(None) in typing.get_args(own[key]):  # None where grpo-tui allows it
            preset["train"][key] = default
    for key, f in _trl_fields("ModelConfig").items():
        rule = RULES.get(key)
        if rule and rule.action == "map" and field_default(f) is not None:
            _set(preset, rule.target, field_default(f))
    return preset


def _dataset(preset: dict[str, Any], recipe: dict[str, Any], where: str, notes: list[str]) -> None:
    name, split = recipe.get("dataset_name"), recipe.get("dataset_train_split", "train")
    if name is None:
        notes.append("no dataset_name: training on grpo-tui's built-in synthetic problems")
        return
    if not isinstance(name, str) or not name or not isinstance(split, str):
        raise PresetError(f"{where}: dataset_name / dataset_train_split must be strings.")
    path = Path(name).expanduser()
    if not path.exists():  # a hub id, loaded by the engine with datasets.load_dataset
        preset["data"].update(source="hub", dataset=name, split=split)
        return
    if recipe.get("dataset_config") is not None:
        raise PresetError(
            f"{where}: dataset_config is refused: {name} is local data, which has no configurations; "
            "remove dataset_config."
        )
    if path.is_file():
        if split != "train":
            raise PresetError(
                f"{where}: dataset_train_split = {_yaml(split)} is refused: a single file {name} holds "
                "only the split 'train'; remove dataset_train_split."
            )
        files = [str(path.resolve())]
    else:
        from datasets.data_files import DataFilesDict, get_data_patterns

        root = path.resolve()
        try:
            found = {
                str(k): sorted(v)
                for k, v in DataFilesDict.from_patterns(get_data_patterns(str(root)), base_path=str(root)).items()
            }
        except Exception as e:  # noqa: BLE001 - datasets raises several kinds for an unreadable folder
            raise PresetError(f"{where}: dataset_name {name}: no data files found ({type(e).__name__}: {e}).") from None
        if split not in found:
            raise PresetError(
                f"{where}: dataset_train_split = {_yaml(split)}: {name} holds the splits "
                f"{', '.join(found) or 'none'}; set dataset_train_split to one of them."
            )
        files = found[split]
    preset["data"].update(source="file", data_files=files)


def _rewards(preset: dict[str, Any], recipe: dict[str, Any], where: str, notes: list[str]) -> None:
    from grpo_tui.engine.rewards.spec import MODEL_PREFIX

    names, weights = recipe.get("reward_funcs"), recipe.get("reward_weights")
    model = recipe.get("reward_model_name_or_path")
    if names is None and model is None:
        if weights is not None:
            raise PresetError(f"{where}: reward_weights is refused without reward_funcs; list the rewards it weights.")
        notes.append("no reward_funcs: using grpo-tui's default rewards")
        return
    names = [names] if isinstance(names, str) else ([] if names is None else names)
    if not isinstance(names, list) or not (names or model):
        raise PresetError(f"{where}: reward_funcs must be a list of reward names.")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise PresetError(f"{where}: reward_model_name_or_path must be a hub id or a directory.")
    # trl grpo's order: the reward model first, then reward_funcs; reward_weights follows it
    specs = ([MODEL_PREFIX + model] if model else []) + [reward_spec(n, where) for n in names]
    if len(set(specs)) < len(specs):
        raise PresetError(
            f"{where}: reward_funcs {_yaml(names)} names a reward twice; give each once and weight it "
            "with reward_weights."
        )
    weights = [1.0] * len(specs) if weights is None else _scalar(weights)
    if (
        not isinstance(weights, list)
        or len(weights) != len(specs)
        or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) for w in weights)
    ):
        raise PresetError(
            f"{where}: reward_weights = {_yaml(weights)} is refused: give one number per reward "
            f"({len(specs)}: the reward model first, if any, then each reward_funcs entry)."
        )
    preset["rewards"] = {s: float(w) for s, w in zip(specs, weights)}


def _special(
    preset: dict[str, Any], recipe: dict[str, Any], key: str, value: Any, where: str, notes: list[str]
) -> None:
    train = preset["train"]
    if key == "max_steps":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PresetError(
                f"{where}: max_steps = {_yaml(value)} is refused: grpo-tui trains a fixed number of "
                "optimizer steps; set max_steps to a positive integer."
            )
        train["max_steps"] = value
    elif key == "num_train_epochs":
        if "max_steps" not in recipe or recipe["max_steps"] in (-1, None):
            raise PresetError(
                f"{where}: num_train_epochs is refused: grpo-tui counts optimizer steps, not epochs; "
                "replace it with max_steps: N."
            )
        notes.append("num_train_epochs: max_steps sets the length, as in transformers")
    elif key == "warmup_steps":
        given = recipe.get("max_steps")
        steps = (
            given
            if isinstance(given, int) and not isinstance(given, bool) and given > 0
            else train.get("max_steps", TrainConfig().max_steps)
        )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PresetError(
                f"{where}: warmup_steps = {_yaml(value)} is refused: give a step count or a ratio below 1."
            )
        ratio = float(value) if value < 1 else value / steps
        if ratio > 1:
            raise PresetError(f"{where}: warmup_steps = {_yaml(value)} is longer than max_steps ({steps}); shorten it.")
        train["warmup_ratio"] = ratio
        if value >= 1:
            notes.append(f"warmup_steps {value}: [train] warmup_ratio = {ratio:g} of {steps} steps")
    elif key == "data_seed":
        if value is not None and value != recipe.get("seed", train.get("seed")):
            raise PresetError(
                f"{where}: data_seed = {_yaml(value)} is refused: grpo-tui uses one seed for data order, "
                "sampling and initialisation; set seed instead."
            )
    elif key == "save_strategy":
        if value == "no":
            train["save_steps"] = 0
        elif value != "steps":
            raise PresetError(
                f"{where}: save_strategy = {_yaml(value)} is refused: grpo-tui saves every save_steps "
                'steps ("steps") or never ("no").'
            )
    # dataset_name, dataset_train_split, reward_funcs and reward_weights are read as groups (_dataset, _rewards)


def read_recipe(path: Path) -> Recipe:
    """A TRL YAML recipe as a preset dict. Raises PresetError naming the file, the key and the fix."""
    import yaml

    where = str(path)
    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PresetError(f"{where}: not valid YAML: {e}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"{where}: can't read: {e}.") from None
    if not isinstance(recipe, dict) or not all(isinstance(k, str) for k in recipe):
        raise PresetError(f"{where}: a TRL recipe is a YAML mapping of field names to values.")
    preset, notes = _base(Path(path).stem), []
    own_train = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("internal")]
    for key, value in recipe.items():
        value = _scalar(value)
        rule, owner = RULES.get(key), _owner(key)
        if rule is None and (owner == "GRPOConfig" or key in own_train):
            if value is not None or key not in own_train:
                preset["train"][key] = value
            continue
        if rule is None:
            known = sorted(
                set(RULES)
                | set(_trl_fields("GRPOConfig"))
                | set(own_train)
                | set(_trl_fields("ModelConfig"))
                | set(_trl_fields("ScriptArguments"))
            )
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise PresetError(
                f"{where}: unknown key '{key}'.{hint} A recipe takes the fields of TRL's "
                "ScriptArguments, ModelConfig and GRPOConfig (see docs/presets.md)."
            )
        if rule.action == "map":
            if value is not None:
                _set(preset, rule.target, [value] if key == "lora_target_modules" and isinstance(value, str) else value)
        elif rule.action == "default":
            default = _trl_default(owner, key) if owner else None
            if value != default:
                raise PresetError(
                    f"{where}: {key} = {_yaml(value)} is refused: {rule.reason}; remove it "
                    f"(or set it to {_yaml(default)})."
                )
        elif rule.action == "ignore":
            notes.append(f"{key} ignored: {rule.reason}")
        elif rule.action == "refuse":
            raise PresetError(f"{where}: {key} is refused: {rule.reason}; remove it.")
        else:
            _special(preset, recipe, key, value, where, notes)
    _dataset(preset, recipe, where, notes)
    _rewards(preset, recipe, where, notes)
    if "model_name_or_path" not in recipe:
        notes.append("no model_name_or_path: grpo-tui's default model")
    if "max_steps" not in recipe:
        notes.append(f"no max_steps: training runs {TrainConfig().max_steps} steps (grpo-tui's default)")
    return Recipe(preset, notes)


# ---------------------------------------------------------------- the other way: a preset as a recipe


def _yaml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def to_trl_recipe(cfg: Config) -> tuple[dict[str, Any], list[str]]:
    """A preset as the keys of a TRL recipe, plus comments for what a recipe cannot say."""
    out: dict[str, Any] = {}
    comments: list[str] = []
    m, d, t = cfg.model, cfg.data, cfg.train
    out["model_name_or_path"] = m.name
    out["dtype"] = m.dtype
    if m.attn_implementation:
        out["attn_implementation"] = m.attn_implementation
    out["use_peft"] = m.lora
    if m.lora:
        out.update(
            lora_r=m.lora_r,
            lora_alpha=m.lora_alpha,
            lora_dropout=m.lora_dropout,
            lora_target_modules=list(m.lora_target_modules),
            load_in_4bit=m.load_in_4bit,
        )
        if m.lora_layers:
            comments.append(f"[model] lora_layers = {m.lora_layers}: grpo-tui only")
    out["gradient_checkpointing"] = m.gradient_checkpointing
    if d.source == "file" and len(d.data_files) == 1:
        out["dataset_name"] = d.data_files[0]
    elif d.source in ("hub", "gsm8k") and not d.data_files:
        out["dataset_name"] = d.dataset if d.source == "hub" else "openai/gsm8k"
        config = d.dataset_config if d.source == "hub" else "main"
        if config:
            out["dataset_config"] = config
        out["dataset_train_split"] = d.split if d.source == "hub" else "train"
    else:
        comments.append(
            f"[data] source = {d.source!r}"
            + (f" with {len(d.data_files)} files" if d.data_files else "")
            + ": no TRL dataset_name says this"
        )
    from grpo_tui.engine.rewards.spec import MODEL_PREFIX

    funcs, weights, model_weight = [], [], []
    registry = trl_reward_registry()
    for spec, weight in cfg.reward_weights().items():
        module, _, func = spec.partition(":")
        if spec.startswith(MODEL_PREFIX) and not model_weight:  # trl grpo takes one reward model
            out["reward_model_name_or_path"] = spec[len(MODEL_PREFIX) :]
            model_weight.append(weight)
            continue
        if module == "trl.rewards" and registry.get(func):
            funcs.append(func)
        elif func and not spec.endswith(".py") and ".py:" not in spec and "/" not in spec:
            funcs.append(f"{module}.{func}")
        else:
            comments.append(f"[rewards] {spec} = {weight:g}: a grpo-tui reward, not loadable by trl grpo")
            continue
        weights.append(weight)
    if funcs:
        out["reward_funcs"] = funcs
    if funcs or model_weight:
        out["reward_weights"] = model_weight + weights
    grpo = _trl_fields("GRPOConfig")  # trl is imported by now (the reward registry)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(t, f.name)
        if f.name in grpo and f.name not in ENGINE_OWNED["train"]:
            if value is not None:
                out[f.name] = _yaml_value(value)
        elif f.name == "warmup_ratio":
            out["warmup_steps"] = value
        elif f.name == "trl_extra":
            out.update({k: _yaml_value(v) for k, v in value.items()})
        elif value != field_default(f):
            comments.append(f"[train] {f.name} = {value!r}: grpo-tui only")
    out["save_strategy"] = "steps" if t.save_steps else "no"
    if not t.save_steps:
        out.pop("save_steps", None)
    dist = cfg.distributed
    if dist.vllm_server_host:
        out.update(
            vllm_server_host=dist.vllm_server_host,
            vllm_server_port=dist.vllm_server_port,
            vllm_group_port=dist.vllm_group_port,
            vllm_server_timeout=dist.vllm_server_timeout,
        )
    for section in ("prompt", "sft", "curriculum", "eval", "distributed"):
        current, default = getattr(cfg, section), type(getattr(cfg, section))()
        for f in dataclasses.fields(current):
            value = getattr(current, f.name)
            if value != getattr(default, f.name) and not f.name.startswith("vllm_server") and f.name != "trl_extra":
                comments.append(f"[{section}] {f.name} = {value!r}: grpo-tui only")
    return out, comments


def to_trl_yaml(cfg: Config) -> str:
    """The preset as a YAML file for `trl grpo --config` (and for `grpo-tui --config`)."""
    import yaml

    out, comments = to_trl_recipe(cfg)
    head = [f"# {cfg.preset.name or 'preset'} as a TRL recipe: trl grpo --config FILE, or grpo-tui --config FILE"]
    if comments:
        head.append("# Settings a TRL recipe cannot carry (they keep their grpo-tui defaults when read back):")
        head += [f"#   {c}" for c in comments]
    return "\n".join(head) + "\n" + yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


def rule_rows() -> list[tuple[str, str, str, str]]:
    """(key, TRL class, what grpo-tui does, why) for the reference table in docs/presets.md."""
    rows = []
    for key, rule in sorted(RULES.items(), key=lambda kv: (_owner(kv[0]) or "", kv[0])):
        owner = _owner(key) or "?"
        action = {
            "map": f"-> [{rule.target.replace('.', '] ')}",
            "default": "accepted at TRL's default only",
            "ignore": "accepted, no effect (note printed)",
            "refuse": "refused",
            "special": "mapped",
        }[rule.action]
        rows.append((key, owner, action, rule.reason))
    return rows
