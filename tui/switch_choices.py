"""Which presets a running run can switch to, and why not for the others.

A switch continues from the run's latest weights in the same process, so the
new preset must train the same model with the same adapter shape, on a device
this machine has. The engine refuses anything else (engine.train.preset_switch.switch_problem);
the picker says why up front instead of sending a command that will bounce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpo_tui.engine.config.schema import MODEL_SHAPE_KEYS


@dataclass(frozen=True)
class PresetChoice:
    name: str
    description: str
    problem: str | None = None  # why the run can't continue under it; None when it can
    running: bool = False  # the run's own preset: choosing it changes nothing


def _has_gpu() -> bool:
    from grpo_tui.engine.gpu import visible_gpus

    try:
        return visible_gpus() is not None
    except Exception:  # noqa: BLE001 - no driver, no library: no GPU
        return False


def switch_problem(run_config: dict[str, Any], preset: Any, has_gpu: bool) -> str | None:
    """Why a run with this resolved config can't continue under `preset` (a loaded engine Config), or None."""
    device = getattr(preset.preset, "device", "") or ""
    if device and device != "cpu" and not has_gpu:
        return f"needs a GPU ([preset] device = {device!r}); none is visible here"
    model = run_config.get("model") or {}
    for key in MODEL_SHAPE_KEYS:
        if key in model and getattr(preset.model, key, None) != model[key]:
            return f"[model] {key} = {getattr(preset.model, key, None)!r}, this run has {model[key]!r}"
    return None


def switch_choices(run_config: dict[str, Any], current: str) -> list[PresetChoice]:
    """Every shipped preset with whether this run can switch to it; runnable ones first, then by name."""
    from grpo_tui.engine.config import PresetError, list_presets, load_config

    has_gpu = _has_gpu()
    out = []
    for name in list_presets():
        try:
            cfg = load_config(name)
        except (PresetError, OSError, ValueError) as e:
            out.append(PresetChoice(name, "", f"does not load: {e}"))
            continue
        desc = str(getattr(cfg.preset, "description", "") or "")
        if name == current:
            out.append(PresetChoice(name, desc, None, running=True))
        else:
            out.append(PresetChoice(name, desc, switch_problem(run_config, cfg, has_gpu)))
    return sorted(out, key=lambda c: (c.problem is not None, c.name))
