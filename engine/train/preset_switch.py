"""Whether a running training can continue under another preset (the `switch_preset` command).

The run keeps its weights and checkpoint across a switch, so the new preset must train the same model with the
same adapter shape, and its rewards must load. Called on the command watcher's thread, before the command is
accepted, so a refusal comes back at once.
"""

from __future__ import annotations

from pathlib import Path

from grpo_tui.engine import distributed
from grpo_tui.engine.config import Config, PresetError, load_config
from grpo_tui.engine.config.schema import MODEL_SHAPE_KEYS
from grpo_tui.engine.rewards.trl_call import close_rewards
from grpo_tui.engine.train.rewards import build_rewards
from grpo_tui.rundir.private_io import trusted_file_problem


def switch_problem(current: Config, preset: str) -> str | None:
    """Why the run can't continue under `preset` from its current weights, or None if it can."""
    if distributed.world_size() > 1:
        return (
            "switching presets is not supported in a multi-process run: stop it, then start again with "
            f"--resume --preset {preset}"
        )
    try:
        new = load_config(preset, [f"train.max_steps={current.train.max_steps}"])
    except PresetError as e:
        return str(e)
    if new.source and Path(new.source).is_file():
        # a command file names the preset: only run code from presets you (or root, for installed ones) own
        problem = trusted_file_problem(new.source, "preset")
        if problem:
            return problem
    a, b = current.model, new.model
    for key in MODEL_SHAPE_KEYS:
        if getattr(a, key) != getattr(b, key):
            return (
                f"preset {preset} has [model] {key} = {getattr(b, key)!r} but this run has "
                f"{getattr(a, key)!r}: its checkpoint can't continue under another model or adapter shape"
            )
    try:
        close_rewards(build_rewards(new)[0])
    except Exception as e:  # noqa: BLE001 - any reward problem is a reason to refuse
        return f"preset {preset}: [rewards] {e}"
    return None
