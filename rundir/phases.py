"""The step-time phases of a `step` event's `phase_s`, and what cuts each one.

Part of the run-directory contract: the engine writes `phase_s` with these
names, and every reader (dashboard, headless summary, bench) names the
dominant phase and its remedy from here. No torch, no textual.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PHASES = ("generation", "rewards", "logprobs", "forward_backward", "optimizer", "recording", "checkpoint", "other")

# What would cut each phase, for the run summary: (remedy, the [train] setting that already applies it or None).
REMEDIES: dict[str, list[tuple[str, str | None]]] = {
    "generation": [
        ("vLLM (train.use_vllm) on a GPU", "use_vllm"),
        ("train.share_prompt_prefix on a CPU (one prefill per prompt; slower on an H200)", "share_prompt_prefix"),
        ("a smaller G (num_generations)", None),
        ("shorter max_completion_length", None),
    ],
    "rewards": [("cheaper reward functions (math_verify is the slow one) or fewer of them", None)],
    "logprobs": [("beta = 0 (no reference pass) and num_iterations = 1 (no old-policy pass)", None)],
    "forward_backward": [
        (
            "train.share_prompt_prefix on a CPU (each prompt encoded once, not G times; one process)",
            "share_prompt_prefix",
        ),
        ("fewer LoRA layers (model.lora_layers)", None),
        ("shorter completions", None),
        ("a smaller G", None),
    ],
    "optimizer": [("LoRA instead of full fine-tuning, or a lighter optimizer (adamw_8bit)", None)],
    "recording": [("nothing in the preset; rollout recording should stay small, report it if it dominates", None)],
    "checkpoint": [("a larger train.save_steps", None)],
    "other": [("nothing in the preset; time outside the timed phases", None)],
}


# remedies that only apply when a [model] setting is on (no LoRA layers to drop without LoRA)
NEEDS_MODEL: dict[str, str] = {"fewer LoRA layers (model.lora_layers)": "lora"}


def remedy(phase: str, train: dict[str, Any] | None = None, model: dict[str, Any] | None = None) -> str:
    """What would cut `phase`, leaving out what the run's [train] settings already do and, given the [model]
    settings, what doesn't apply to that model."""
    train = train or {}
    return ", ".join(
        text
        for text, setting in REMEDIES.get(phase, [])
        if not (setting and train.get(setting))
        and not (model is not None and text in NEEDS_MODEL and not model.get(NEEDS_MODEL[text]))
    )


LABELS = {
    "generation": "generate",
    "rewards": "rewards",
    "logprobs": "logprobs",
    "forward_backward": "fwd+bwd",
    "optimizer": "optimizer",
    "recording": "record",
    "checkpoint": "checkpoint",
    "other": "other",
}


def add_phases(total: dict[str, float], phase_s: Any) -> None:
    """Accumulate one step's phase_s into `total` (ignores anything that is not a number)."""
    if not isinstance(phase_s, dict):
        return
    for name, v in phase_s.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            total[name] = total.get(name, 0.0) + float(v)


def sum_phases(steps: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Seconds per phase over step events."""
    total: dict[str, float] = {}
    for ev in steps:
        add_phases(total, ev.get("phase_s"))
    return total


def shares(phase_s: dict[str, float]) -> list[tuple[str, float, float]]:
    """(phase, seconds, fraction of the total), largest first; empty when nothing was timed."""
    total = sum(phase_s.values())
    if total <= 0:
        return []
    return sorted(((k, v, v / total) for k, v in phase_s.items() if v > 0), key=lambda x: -x[1])


def dominant(phase_s: dict[str, float]) -> tuple[str, float] | None:
    """The phase with the most seconds and its share, or None."""
    s = shares(phase_s)
    return (s[0][0], s[0][2]) if s else None


def breakdown_text(phase_s: dict[str, float], top: int = 4) -> str:
    """'generate 62% · fwd+bwd 30% · optimizer 4% · ...' for one-line displays.

    Phases that round to 0% are left out (after the first): they only take the line's room.
    """
    parts = [(k, f) for i, (k, _, f) in enumerate(shares(phase_s)[:top]) if i == 0 or f >= 0.005]
    return " · ".join(f"{LABELS.get(k, k)} {100 * f:.0f}%" for k, f in parts)
