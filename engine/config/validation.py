"""Checking a preset: value types (with TOML's coercions), choices, ranges and the combinations no field can check.

Every refusal is a PresetError naming the file, the section and key, and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from typing import Any

from .passthrough import ENGINE_OWNED, trl_field_names, trl_fields
from .schema import SECTIONS, TRL_PASSTHROUGH, Config, PresetError, field_choices, type_name


def coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check value against a field type; ints are accepted where floats are expected."""
    if tp is Any:
        return True, value
    if typing.get_origin(tp) is typing.Literal:
        return value in typing.get_args(tp), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return value in values, value
    if typing.get_origin(tp) is dict or tp is dict:
        return isinstance(value, dict), value
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return (value is None or value == "none"), None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, v = coerce(item, typing.get_args(tp)[0])
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if isinstance(tp, type):  # a class TOML can't write (TRL's Callable or accelerator configs)
        return isinstance(value, tp), value
    return True, value


def unknown_key(where: str, key: str, allowed: list[str], allowed_text: str | None = None) -> PresetError:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return PresetError(f"{where}: unknown key '{key}'.{hint} Allowed: {allowed_text or ', '.join(sorted(allowed))}.")


# Names a TRL field annotation may use that the check can evaluate without importing trl.
_ANNOTATION_NAMES = {
    "dict": dict,
    "list": list,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "None": None,
    "Any": Any,
    "Optional": typing.Optional,
    "Union": typing.Union,
    "Literal": typing.Literal,
}


def _trl_type_from_source(cls: str, key: str) -> tuple[Any, list | None]:
    """(type, choices) of a TRL field read from the installed source, or (None, None) when only importing trl
    can tell (a TRL or transformers type in the annotation, computed choices): importing trl takes seconds."""
    from grpo_tui.engine.trl_source import config_field_annotation, config_field_choices

    text = config_field_annotation(cls, key)
    try:
        choices = config_field_choices(cls, key)
        tp = eval(text, {"__builtins__": {}}, dict(_ANNOTATION_NAMES)) if text else None  # noqa: S307
    except Exception:  # noqa: BLE001 - any name we don't know means: ask trl itself
        return None, None
    return tp, choices


def trl_value(section: str, key: str, value: Any, where: str, own: list[str]) -> Any:
    """A value for a TRL field written in [train]/[sft], checked like the project's own fields."""
    if key in ENGINE_OWNED[section]:
        raise PresetError(f"{where}: [{section}] {key} is set by the engine: {ENGINE_OWNED[section][key]}.")
    cls = TRL_PASSTHROUGH[section]
    # read from trl's sources: a misspelled key is refused without importing trl, which takes seconds
    names = trl_field_names(section)
    if key not in names:
        raise unknown_key(
            f"{where} [{section}]",
            key,
            own + sorted(names),
            f"the project's fields and every field of trl.{cls} (list them: grpo-tui presets --fields {section})",
        )
    tp, choices = _trl_type_from_source(cls, key)
    if tp is None:
        tp, f = trl_fields(section)[key]
        choices = f.metadata.get("choices")
    ok, coerced = coerce(value, tp)
    if not ok:
        help_ = " ".join(str(trl_fields(section)[key][1].metadata.get("help", "")).split())[:200]
        raise PresetError(
            f"{where}: [{section}] {key} = {value!r} has the wrong type; expected {type_name(tp)} "
            f"(trl.{cls}.{key}: {help_})"
        )
    if choices and coerced not in list(choices):
        raise PresetError(
            f"{where}: [{section}] {key} = {value!r} is not allowed; "
            f"choose one of {', '.join(map(repr, choices))} (trl.{cls}.{key})."
        )
    return coerced


def build_section(cls: type, raw: Any, where: str, section: str) -> Any:
    if not isinstance(raw, dict):
        raise PresetError(f"{where}: [{section}] must be a table, got {type(raw).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields and section in TRL_PASSTHROUGH:
            extra[key] = trl_value(section, key, value, where, list(fields))
            continue
        if key not in fields:
            raise unknown_key(f"{where} [{section}]", key, list(fields))
        ok, coerced = coerce(value, hints[key])
        if not ok:
            raise PresetError(
                f"{where}: [{section}] {key} = {value!r} has the wrong type; "
                f"expected {type_name(hints[key])}. ({fields[key].metadata['help']})"
            )
        if isinstance(coerced, float) and not math.isfinite(coerced):
            raise PresetError(
                f"{where}: [{section}] {key} = {value!r} is not a finite number; "
                f"give a real value. ({fields[key].metadata['help']})"
            )
        choices = field_choices(fields[key])
        if choices and coerced not in choices:
            raise PresetError(
                f"{where}: [{section}] {key} = {value!r} is not allowed; choose one of {', '.join(map(repr, choices))}."
            )
        values[key] = coerced
    if extra:
        values["trl_extra"] = extra
    return cls(**values)


def check_rewards(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise PresetError(f"{where}: [rewards] must be a non-empty table of reward name -> weight.")
    for name, value in raw.items():
        weight = value.get("weight", 1.0) if isinstance(value, dict) else value
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise PresetError(
                f"{where}: [rewards] {name} = {value!r}: the weight must be a number "
                f"(or a table with a numeric 'weight')."
            )
    return {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in raw.items()}


def _check_ranges(cfg: Config, where: str) -> None:
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            bounds = f.metadata.get("range")
            value = getattr(getattr(cfg, section), f.name)
            if bounds is None or value is None or isinstance(value, bool):
                continue
            if not bounds.contains(value):
                raise PresetError(f"{where}: [{section}] {f.name} = {value!r} is out of range; it must be {bounds}.")
    for name, weight in cfg.reward_weights().items():
        if not math.isfinite(weight):
            raise PresetError(f"{where}: [rewards] {name} weight = {weight!r} is not a finite number.")


def validate(cfg: Config) -> None:
    """Each field's range, then the combinations no single field can check. Raises PresetError."""
    t, where = cfg.train, cfg.source or "config"
    dist = cfg.distributed
    _check_ranges(cfg, where)  # first: the checks below may divide by these values
    if dist.num_processes % dist.num_machines:
        raise PresetError(
            f"{where}: [distributed] num_processes ({dist.num_processes}) must be a positive multiple "
            f"of num_machines ({dist.num_machines}): the same number of processes on every machine."
        )
    if not 0 <= dist.machine_rank < dist.num_machines:
        raise PresetError(
            f"{where}: [distributed] machine_rank = {dist.machine_rank} must be in 0..{dist.num_machines - 1}."
        )
    spg = t.steps_per_generation or t.gradient_accumulation_steps
    gen_batch = t.per_device_train_batch_size * spg
    if gen_batch % t.num_generations:
        raise PresetError(
            f"{where}: [train] per_device_train_batch_size ({t.per_device_train_batch_size}) x "
            f"steps_per_generation ({spg}) = {gen_batch} completions is not divisible by "
            f"num_generations ({t.num_generations}); make the batch a multiple of num_generations."
        )
    if dist.vllm_server_host and not (t.use_vllm and t.vllm_mode == "server"):
        raise PresetError(
            f"{where}: [distributed] vllm_server_host = {dist.vllm_server_host!r} is only used in vLLM "
            'server mode: set [train] use_vllm = true and vllm_mode = "server", or drop the host.'
        )
    m = cfg.model
    if t.share_prompt_prefix and dist.num_processes > 1:
        raise PresetError(
            f"{where}: [train] share_prompt_prefix = true runs in one process only: its two forwards "
            "per batch bypass the DDP/DeepSpeed wrapper; set share_prompt_prefix = false or "
            "[distributed] num_processes = 1."
        )
    if t.share_prompt_prefix and m.lora and m.lora_dropout > 0:
        raise PresetError(
            f"{where}: [train] share_prompt_prefix = true scores the shared prompt and the completions "
            f"in separate forwards, so LoRA dropout ([model] lora_dropout = {m.lora_dropout:g}) would "
            "draw different masks than TRL's single pass; set --set model.lora_dropout=0 or turn "
            "share_prompt_prefix off."
        )
    if t.share_prompt_prefix and m.gradient_checkpointing:
        raise PresetError(
            f"{where}: [train] share_prompt_prefix = true needs the model's KV cache, which gradient "
            "checkpointing turns off in training; set share_prompt_prefix = false or "
            "[model] gradient_checkpointing = false."
        )
    if t.trl_extra.get("cache_implementation"):
        # both hand generate a cache of their own, and generate refuses a cache_implementation beside one
        on_cpu = t.use_cpu or cfg.preset.device == "cpu"
        clash = ["share_prompt_prefix"] if t.share_prompt_prefix else []
        clash += ["fast_cpu_decode"] if t.fast_cpu_decode and on_cpu else []
        if clash:
            raise PresetError(
                f"{where}: [train] cache_implementation = {t.trl_extra['cache_implementation']!r} can't be used "
                f"with {' or '.join(clash)}, which pass generation a cache of their own; set "
                f"{' and '.join(f'{k} = false' for k in clash)}, or drop cache_implementation."
            )
    paged = [k for k in ("use_transformers_paged", "use_transformers_continuous_batching") if t.trl_extra.get(k)]
    if t.stop_strings and (t.use_vllm or paged):
        off = " and ".join(f"{k} = false" for k in (["use_vllm"] if t.use_vllm else []) + paged)
        raise PresetError(
            f"{where}: [train] stop_strings works with transformers generation only; set stop_strings = [] or {off}."
        )
    if any(not isinstance(x, str) or not x for x in t.stop_strings):
        raise PresetError(f"{where}: [train] stop_strings = {t.stop_strings!r}: each must be a non-empty string.")
    if m.load_in_4bit and not m.lora:
        raise PresetError(
            f"{where}: [model] load_in_4bit = true needs lora = true (4-bit weights can't be trained directly)."
        )
    d = cfg.data
    if d.balance_by and t.trl_extra.get("shuffle_dataset"):
        raise PresetError(
            f"{where}: [data] balance_by = {d.balance_by!r} orders the rows in rounds, which [train] "
            "shuffle_dataset = true would undo; remove one of them."
        )
    if d.source == "file" and not d.data_files:
        raise PresetError(f"{where}: [data] source = 'file' needs data_files = [\"path.jsonl\", ...].")
    if d.source == "hub" and not d.dataset and not d.data_files:
        raise PresetError(f"{where}: [data] source = 'hub' needs dataset = \"owner/name\" (the hub id).")
    s = cfg.sft
    if s.enabled:
        if m.load_in_4bit:
            raise PresetError(
                f"{where}: [sft] enabled = true with [model] load_in_4bit = true: run the SFT stage in a "
                "preset without 4-bit, then point [model] name at its RUN_DIR/sft/model."
            )
        if s.epochs <= 0 and s.max_steps < 1:
            raise PresetError(f"{where}: [sft] set epochs > 0 or max_steps >= 1.")
    c = cfg.curriculum
    if c.min_pass_rate > c.max_pass_rate:
        raise PresetError(
            f"{where}: [curriculum] need 0 <= min_pass_rate <= max_pass_rate <= 1 "
            f"(got {c.min_pass_rate}, {c.max_pass_rate})."
        )
    if c.prepass and c.prepass_samples < 2:
        raise PresetError(f"{where}: [curriculum] prepass_samples must be at least 2 to tell easy from hard problems.")
    if c.prepass and c.exclusive and c.min_pass_rate == c.max_pass_rate:
        raise PresetError(
            f"{where}: [curriculum] an exclusive band ({c.min_pass_rate}, {c.max_pass_rate}) is empty; "
            "widen it or set exclusive = false."
        )


def config_from_dict(raw: dict, where: str) -> Config:
    raw = dict(raw)
    raw.pop("source", None)
    allowed = list(SECTIONS) + ["rewards"]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise unknown_key(where, key, allowed)
        if key == "rewards":
            kwargs["rewards"] = check_rewards(value, where)
        else:
            kwargs[key] = build_section(SECTIONS[key], value, where, key)
    cfg = Config(**kwargs, source=where)
    validate(cfg)
    return cfg
