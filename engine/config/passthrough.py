"""TRL passthrough: [train] and [sft] take every field of the installed TRL's GRPOConfig / SFTConfig.

Such a field is written directly in its section (`importance_sampling_level = "sequence"`) and checked against
that dataclass's type hints. trl is imported only when a preset names such a field: importing it takes seconds,
and loading a preset should not.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from .schema import TRL_PASSTHROUGH, describe_fields, field_default, type_name

_LOGGING = "the engine logs every step (events.jsonl, and the trackers in report_to)"
# TRL fields the engine sets itself, and what to set instead.
ENGINE_OWNED: dict[str, dict[str, str]] = {
    "train": {
        "output_dir": "checkpoints go to RUN_DIR/checkpoints",
        "reward_weights": "give each reward its weight in [rewards]",
        "logging_steps": _LOGGING,
        "logging_strategy": _LOGGING,
        "disable_tqdm": "the engine prints its own one-line step report",
        "warmup_steps": "use warmup_ratio",
        "data_seed": "use seed",
        "save_strategy": "use save_steps (0 = checkpoints only on command, on stop and at the end)",
        "gradient_checkpointing": "use [model] gradient_checkpointing",
        "activation_checkpointing": "use [model] gradient_checkpointing",
        "resume_from_checkpoint": "use --resume",
        "vllm_server_host": "use [distributed] vllm_server_host",
        "vllm_server_port": "use [distributed] vllm_server_port",
        "vllm_group_port": "use [distributed] vllm_group_port",
        "vllm_server_timeout": "use [distributed] vllm_server_timeout",
    },
    "sft": {
        "output_dir": "the SFT stage writes to RUN_DIR/sft",
        "num_train_epochs": "use epochs",
        "completion_only_loss": "the stage trains on the solution tokens only; that is its purpose",
        "logging_steps": _LOGGING,
        "logging_strategy": _LOGGING,
        "disable_tqdm": "the engine prints its own step report",
        "warmup_steps": "use warmup_ratio",
        "seed": "set [train] seed (one seed for the run)",
        "data_seed": "set [train] seed (one seed for the run)",
        "bf16": "set [train] bf16 (one precision for the run)",
        "save_strategy": "use save_steps",
        "gradient_checkpointing": "use [model] gradient_checkpointing",
        "resume_from_checkpoint": "use --resume",
        "report_to": "set [train] report_to (one tracker setting for both stages)",
        "run_name": "set [train] run_name",
        "project": "set [train] project",
    },
}


@functools.cache
def trl_fields(section: str) -> dict[str, tuple[Any, dataclasses.Field]]:
    """name -> (type hint, field) of the TRL config dataclass behind a section."""
    import trl

    cls = getattr(trl, TRL_PASSTHROUGH[section])
    hints = typing.get_type_hints(cls)
    return {f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init}


def trl_field_names(section: str) -> frozenset[str]:
    """The init fields of the section's TRL class, read from trl's sources when possible (no trl import)."""
    from grpo_tui.engine.trl_source import config_field_names

    return config_field_names(TRL_PASSTHROUGH[section]) or frozenset(trl_fields(section))


def describe_all_fields(section: str | None = None) -> list[tuple[str, str, str, str, str]]:
    """(section.key, type, default, help, origin) for the project's knobs and, in [train]/[sft], every field of
    the installed TRL's GRPOConfig/SFTConfig the engine does not set itself. Origin says where a knob comes from."""
    rows = [(*r, "grpo-tui") for r in describe_fields() if section in (None, r[0].split(".")[0])]
    for sec, cls in TRL_PASSTHROUGH.items():
        if section not in (None, sec):
            continue
        own = {r[0] for r in rows}
        for name, (tp, f) in sorted(trl_fields(sec).items()):
            key = f"{sec}.{name}"
            if key in own or name in ENGINE_OWNED[sec]:
                continue
            help_ = " ".join(str(f.metadata.get("help", "")).split())
            rows.append((key, type_name(tp), repr(field_default(f)), help_, f"trl.{cls}"))
    return rows
