"""Live knobs: the training settings a `set` command may change without a restart.

The dashboard's dialog and the engine validate a `set` command's args with the
same function here, so a bad value is refused with the same reason whether it
was typed in the dialog or written to control/ by a script. The engine applies
accepted values at the next step boundary (engine/train/apply_knobs.py), writes a
`knobs` event and updates config.json, so a resumed run keeps them.
"""

from __future__ import annotations

import math
from typing import Any

# knob -> (where it lives in the preset, allowed range as text, check)
KNOBS: dict[str, tuple[str, str, Any]] = {
    "learning_rate": ("[train] learning_rate", "a number > 0 and < 1", lambda v: 0 < v < 1),
    "temperature": ("[train] temperature", "a number > 0 and <= 10", lambda v: 0 < v <= 10),
    "top_p": ("[train] top_p", "a number > 0 and <= 1", lambda v: 0 < v <= 1),
    "beta": ("[train] beta", "a number >= 0 and <= 10", lambda v: 0 <= v <= 10),
}
REWARD_WEIGHTS = "reward_weights"  # arg holding {reward name: weight}; [rewards] <name> in the preset
# What each knob changes, one line each: the knobs dialog and the dashboard's help screen show these.
KNOB_HELP: dict[str, str] = {
    "learning_rate": "size of each update: lower it when KL spikes or the loss turns NaN, raise it when rewards stall",
    "temperature": "sampling temperature of the completions: higher makes a group's answers differ more (more "
    "signal), lower makes them surer",
    "top_p": "nucleus sampling: only the most likely tokens up to this total probability are sampled (1 = all)",
    "beta": "weight of the KL penalty to the reference model: higher keeps the policy near where it started",
    REWARD_WEIGHTS: "a reward's weight in the total that advantages come from: 0 turns it off, higher makes it "
    "count more",
}


class KnobError(ValueError):
    """A `set` command the engine must refuse; the message is the reason shown to the user."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise KnobError(f"{name} = {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise KnobError(f"{name} = {value!r} is not a number") from None
    if not math.isfinite(x):
        raise KnobError(f"{name} = {value!r} must be finite")
    return x


def validate_knobs(args: Any, reward_names: list[str]) -> dict[str, Any]:
    """The cleaned values of a `set` command's args; raises KnobError naming the knob and the allowed range."""
    if not isinstance(args, dict) or not args:
        raise KnobError("set needs at least one of " + ", ".join([*KNOBS, REWARD_WEIGHTS]))
    out: dict[str, Any] = {}
    for name, value in args.items():
        if name in KNOBS:
            where, allowed, ok = KNOBS[name]
            x = _number(name, value)
            if not ok(x):
                raise KnobError(f"{name} = {value!r} is out of range: {where} must be {allowed}")
            out[name] = x
        elif name == REWARD_WEIGHTS:
            if not isinstance(value, dict) or not value:
                raise KnobError(f"{REWARD_WEIGHTS} must be a table of reward name -> weight")
            weights = {}
            for reward, w in value.items():
                if reward not in reward_names:
                    raise KnobError(
                        f"no reward named {reward!r} in this run; its rewards are {', '.join(reward_names) or '(none)'}"
                    )
                weights[reward] = _number(f"{REWARD_WEIGHTS}.{reward}", w)
            out[REWARD_WEIGHTS] = weights
        else:
            raise KnobError(f"{name!r} is not a live knob; allowed: {', '.join([*KNOBS, REWARD_WEIGHTS])}")
    return out


def knobs_from_config(config: dict[str, Any], reward_names: list[str]) -> dict[str, Any]:
    """The knobs' values in a resolved config (run_start's `config`), reward weights by label."""
    train = config.get("train") or {}
    out: dict[str, Any] = {k: train[k] for k in KNOBS if k in train}
    rewards = config.get("rewards") or {}
    weights = [float(v["weight"]) if isinstance(v, dict) else float(v) for v in rewards.values()]
    if len(weights) == len(reward_names):
        out[REWARD_WEIGHTS] = dict(zip(reward_names, weights))
    return out


def describe_change(values: dict[str, Any], previous: dict[str, Any]) -> str:
    """'learning_rate 0.0001 -> 5e-05, reward_weights.correctness 1 -> 2' for acks and logs."""
    parts = []
    for k, v in values.items():
        if k == REWARD_WEIGHTS:
            old = previous.get(REWARD_WEIGHTS) or {}
            parts += [
                f"{k}.{n} {old.get(n, '?'):g} -> {w:g}" if isinstance(old.get(n), (int, float)) else f"{k}.{n} -> {w:g}"
                for n, w in v.items()
            ]
        else:
            old = previous.get(k)
            parts.append(f"{k} {old:g} -> {v:g}" if isinstance(old, (int, float)) else f"{k} -> {v:g}")
    return ", ".join(parts)
