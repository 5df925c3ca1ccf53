"""Fold an event stream into the run's current picture (state, last step, curves' ends).

Pure functions over event dicts: the headless printer, the dashboard, the
run list of the browser and the tests all read a run through this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable


POLICY_METRICS = ("entropy", "kl", "grad_norm")  # issue 16: shown by the headless line and summary


@dataclass
class RunSummary:
    preset: str = ""
    model: str = ""
    run_dir: str = ""
    state: str = "starting"
    detail: str = ""
    step: int = 0
    max_steps: int = 0
    reward_names: list[str] = field(default_factory=list)
    last_step: dict[str, Any] = field(default_factory=dict)
    last_memory: dict[str, Any] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)  # mean total reward per step
    zero_std: list[float] = field(default_factory=list)
    zero_std_before: list[float] = field(default_factory=list)  # dynamic sampling: before filtering
    correct: list[float] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    reward_failures: dict[str, int] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    started_t: float | None = None
    last_t: float | None = None
    unknown_types: int = 0
    newer_schema: int = 0
    # issue 16 (monitor): port into the single fold at merge
    health: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule -> latest "warn" event, while it fires
    health_fired: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule -> first "warn" event of the run
    knobs: list[dict[str, Any]] = field(default_factory=list)  # `knobs` events (live changes)
    policy: dict[str, list[float]] = field(default_factory=dict)  # entropy, kl, grad_norm per step (finite only)

    def add(self, ev: dict[str, Any]) -> None:
        typ = ev.get("type")
        self.last_t = ev.get("t", self.last_t)
        if ev.get("v", 1) > 1:
            self.newer_schema += 1
        if typ == "run_start":
            self.preset = ev.get("preset", self.preset)
            self.model = ev.get("model", self.model)
            self.run_dir = ev.get("run_dir", self.run_dir)
            self.max_steps = ev.get("max_steps", self.max_steps)
            self.reward_names = ev.get("reward_names", self.reward_names)
            self.started_t = self.started_t or ev.get("t")
            self.end = None
        elif typ == "state":
            self.state = ev.get("state", self.state)
            self.detail = ev.get("detail", "")
        elif typ == "step":
            self.step = ev.get("step", self.step)
            self.max_steps = ev.get("max_steps", self.max_steps)
            self.last_step = ev
            m = ev.get("metrics") or {}
            if m.get("reward") is not None:
                self.rewards.append(m["reward"])
            if m.get("frac_reward_zero_std") is not None:
                self.zero_std.append(m["frac_reward_zero_std"])
            if m.get("dynamic_sampling/frac_reward_zero_std_before") is not None:
                self.zero_std_before.append(m["dynamic_sampling/frac_reward_zero_std_before"])
            if ev.get("correct_frac") is not None:
                self.correct.append(ev["correct_frac"])
            for key in POLICY_METRICS:  # issue 16
                if isinstance(m.get(key), (int, float)) and math.isfinite(m[key]):
                    self.policy.setdefault(key, []).append(float(m[key]))
        elif typ == "memory":
            self.last_memory = ev
        elif typ == "checkpoint":
            self.checkpoints.append(ev)
        elif typ == "error":
            self.errors.append(ev)
        elif typ == "reward_failure":
            name = ev.get("reward", "?")
            self.reward_failures[name] = self.reward_failures.get(name, 0) + int(ev.get("count", 0))
        elif typ == "dataset":
            self.dataset = ev
        elif typ == "run_end":
            self.end = ev
        elif typ == "eval":
            self.evals.append(ev)
        elif typ == "health":  # issue 16
            rule = str(ev.get("rule"))
            if ev.get("status") == "warn":
                self.health[rule] = ev
                self.health_fired.setdefault(rule, ev)
            else:
                self.health.pop(rule, None)
        elif typ == "knobs":  # issue 16
            self.knobs.append(ev)
        elif typ not in ("model", "command", "stage", "sft_step", "curriculum"):
            self.unknown_types += 1

    def extend(self, events: Iterable[dict[str, Any]]) -> "RunSummary":
        for ev in events:
            self.add(ev)
        return self

    @property
    def metrics(self) -> dict[str, Any]:
        return self.last_step.get("metrics") or {}

    def mean_reward(self, first: int | None = None, last: int | None = None) -> float | None:
        xs = self.rewards[:first] if first else self.rewards[-last:] if last else self.rewards
        return sum(xs) / len(xs) if xs else None


def summarize(events: Iterable[dict[str, Any]]) -> RunSummary:
    return RunSummary().extend(events)


def mean_and_stderr(xs: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than 2 values)."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    mean = sum(xs) / n
    if n < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
