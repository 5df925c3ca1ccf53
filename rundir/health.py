"""Health checks over a run's event stream: rules that spot a GRPO run going wrong, with a fix.

Each rule reads the step events seen so far (and reward failures), compares
one number against a threshold, and when it trips gives a one-line diagnosis
and a suggested fix that names the preset keys to change. The engine runs a
`HealthMonitor` after every step and writes each change as a `health` event
(status "warn" when a rule starts firing, "ok" when it clears), so the record
in events.jsonl is the source of truth: the dashboard, the headless printer
and the run summary only display those events (docs/run-directory.md).

Pure Python over event dicts: no torch, no textual.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Every rule's threshold (one place, so tests and docs quote the same numbers)."""

    zero_std_frac: float = 0.5  # a step is "mostly zero-std" at or above this fraction of groups
    zero_std_steps: int = 5  # ... for this many steps in a row
    entropy_ratio: float = 0.1  # entropy (mean of the last 3 steps) below this x its start (first 3 steps)
    entropy_floor: float = 0.05  # ... or below this absolute value (nats per token), after entropy_min_steps
    entropy_min_steps: int = 6
    kl_spike_factor: float = 5.0  # KL above this x the median of the previous kl_window steps
    kl_window: int = 10
    kl_min: float = 0.05  # ... and above this absolute value (small KLs jitter by large factors)
    length_collapse_ratio: float = 0.4  # mean length (last 3 steps) below this x its running peak (3-step means)
    length_min_steps: int = 6
    length_limit_frac: float = 0.9  # mean length (last 3 steps) at or above this x max_completion_length
    truncation_frac: float = 1 / 3  # truncated completions (mean of the last 3 steps) above this fraction
    hacking_window: int = 10  # compare the halves of the last N steps
    hacking_format_rise: float = 0.1  # a format reward rose by at least this much (in the reward's units) ...
    hacking_correct_rise: float = 0.02  # ... while the correct fraction rose by at most this much
    reward_failure_steps: int = 5  # reward failures within the last N steps ...
    reward_failure_min: int = 1  # ... at least this many failed completions
    constant_reward_steps: int = 10  # a reward gave every completion the same score for this many steps ...
    # ... while another reward varied
    clear_after: int = 5  # a firing rule clears after this many quiet steps in a row (no flapping
    # warn/ok events when a noisy metric hovers at its threshold)


DEFAULT = Thresholds()
RECENT = 3  # steps averaged for "the current value" of a noisy metric


@dataclass(frozen=True)
class RuleInfo:
    """What a rule's firing means and how to fix it, for the help screen and the docs; `{field}` names a
    Thresholds field (formatted with it), so the text always quotes the thresholds in force."""

    meaning: str
    fix: str

    def describe(self, t: Thresholds = DEFAULT) -> tuple[str, str]:
        values = {k: getattr(t, k) for k in t.__dataclass_fields__}
        return self.meaning.format(**values, recent=RECENT), self.fix


_CURRICULUM_FIX = (
    "set [curriculum] dynamic_sampling = true (dynamic_sampling_criterion, dynamic_sampling_max_extra), "
    "or [curriculum] prepass = true with min_pass_rate/max_pass_rate (exclusive = true keeps "
    "0 < pass rate < 1)"
)
_DYNAMIC_FIX = (
    "dynamic sampling is on but can't refill enough: raise [curriculum] dynamic_sampling_max_extra, or "
    "filter problems first with [curriculum] prepass = true and a min_pass_rate/max_pass_rate band"
)
_LIMIT_FIX = (
    "raise [train] max_completion_length, or set [train] mask_truncated_completions = true so "
    "cut-off completions don't train"
)

RULE_INFO: dict[str, RuleInfo] = {
    "zero_std": RuleInfo(
        "at least {zero_std_frac:.0%} of the groups had identical rewards (no learning signal) in each of "
        "{zero_std_steps} steps in a row",
        _CURRICULUM_FIX,
    ),
    "entropy_collapse": RuleInfo(
        "token entropy (mean of the last {recent} steps) fell below {entropy_ratio:g} x its start or below "
        "{entropy_floor:g} nats, after {entropy_min_steps} steps: the policy is nearly deterministic",
        "raise [train] temperature, lower [train] learning_rate (both live knobs, key k), or set "
        "[train] epsilon_high above epsilon (clip-higher)",
    ),
    "kl_spike": RuleInfo(
        "KL to the reference rose above {kl_spike_factor:g} x the median of the previous {kl_window} steps "
        "(and above {kl_min:g})",
        "lower [train] learning_rate or raise [train] beta (live knobs, key k); a lower [train] "
        "max_grad_norm limits single bad steps",
    ),
    "length_collapse": RuleInfo(
        "mean completion length (last {recent} steps) fell below {length_collapse_ratio:g} x its peak, after "
        "{length_min_steps} steps: the model may be skipping its reasoning",
        "check which [rewards] pay short answers (format rewards, length_penalty) and lower their "
        "weights (live knob, key k), or lower [train] learning_rate",
    ),
    "length_at_limit": RuleInfo(
        "mean completion length (last {recent} steps) reached {length_limit_frac:.0%} of max_completion_length",
        _LIMIT_FIX,
    ),
    "truncation": RuleInfo(
        "more than {truncation_frac:.0%} of completions (mean of the last {recent} steps) were cut off at "
        "max_completion_length",
        "raise [train] max_completion_length, or set [train] mask_truncated_completions = true",
    ),
    "reward_hacking": RuleInfo(
        "over the last {hacking_window} steps a format reward rose by {hacking_format_rise:g} or more while the "
        "correct fraction rose by {hacking_correct_rise:g} or less: the policy learns the format, not the math",
        "raise the correctness weight or lower the format reward in [rewards] (reward weights are a live knob, key k)",
    ),
    "non_finite": RuleInfo(
        "loss or grad_norm is NaN or infinite at a step: the update is garbage",
        "lower [train] learning_rate (live knob, key k) and [train] max_grad_norm; with float16 use "
        "[model] dtype = 'bfloat16' or 'float32'; check rewards for NaN",
    ),
    "reward_failures": RuleInfo(
        "a reward function raised, timed out or returned a non-number on at least {reward_failure_min} "
        "completion(s) in the last {reward_failure_steps} steps (those scored 0)",
        "fix the function (the reward_failure events and engine.log show an example), or drop it from [rewards]",
    ),
    "constant_reward": RuleInfo(
        "a reward gave every completion the same score for {constant_reward_steps} steps while another reward "
        "varied: it adds nothing to the advantages (a 0 everywhere usually means its pattern never matches)",
        "try the reward on a real completion (key r, or `grpo-tui rewards`): fix its pattern or the preset's "
        "[train] stop_strings / final_newline, or set its weight to 0 (live knob, key k) or drop it from "
        "[rewards]",
    ),
}


@dataclass
class Finding:
    """A rule's verdict at one step: firing or not, with what it saw."""

    rule: str
    firing: bool
    value: float | None = None
    threshold: float | None = None
    diagnosis: str = ""
    fix: str = ""

    def as_event(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "rule": self.rule,
            "status": "warn" if self.firing else "ok",
            "value": _round(self.value),
            "threshold": _round(self.threshold),
            "diagnosis": self.diagnosis,
            "fix": self.fix,
        }


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _reward_names(metrics: list[dict[str, Any]]) -> list[str]:
    """The reward functions whose per-step means these step metrics hold, sorted."""
    return sorted(
        {
            k[len("rewards/") : -len("/mean")]
            for m in metrics
            for k in m
            if k.startswith("rewards/") and k.endswith("/mean")
        }
    )


def is_format_reward(name: str) -> bool:
    """Rewards that pay for the shape of the answer rather than its correctness."""
    n = name.lower()
    return "format" in n or "xml" in n


@dataclass
class History:
    """What the rules read: per-step metric values (None where missing or non-finite) and reward failures."""

    steps: list[int] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    correct: list[float | None] = field(default_factory=list)
    failures: list[tuple[int, str, int]] = field(default_factory=list)  # (step, reward, count)
    max_completion_length: int | None = None
    dynamic_sampling: bool = False

    def series(self, key: str) -> list[float | None]:
        return [_num(m.get(key)) for m in self.metrics]

    def values(self, key: str) -> list[float]:
        return [v for v in self.series(key) if v is not None and math.isfinite(v)]

    @property
    def step(self) -> int:
        return self.steps[-1] if self.steps else 0


Rule = Callable[[History, Thresholds], Finding | None]  # None: not enough data to judge


def zero_std(h: History, t: Thresholds) -> Finding | None:
    xs = h.series("frac_reward_zero_std")[-t.zero_std_steps :]
    if len(xs) < t.zero_std_steps or any(x is None for x in xs):
        return None
    low = min(xs)
    fix = _DYNAMIC_FIX if h.dynamic_sampling else RULE_INFO["zero_std"].fix
    return Finding(
        "zero_std",
        low >= t.zero_std_frac,
        low,
        t.zero_std_frac,
        f"{'all' if low >= 1 else f'at least {low:.0%} of the'} groups had identical rewards (no learning "
        f"signal) in each of the last {t.zero_std_steps} steps",
        fix,
    )


def entropy_collapse(h: History, t: Thresholds) -> Finding | None:
    xs = h.values("entropy")
    if len(xs) < t.entropy_min_steps:
        return None
    start, now = _mean(xs[:RECENT]), _mean(xs[-RECENT:])
    limit = max(t.entropy_floor, t.entropy_ratio * start)
    return Finding(
        "entropy_collapse",
        now < limit,
        now,
        limit,
        f"token entropy fell to {now:.3g} (started at {start:.3g}): the policy is nearly deterministic, "
        "groups stop differing",
        RULE_INFO["entropy_collapse"].fix,
    )


def kl_spike(h: History, t: Thresholds) -> Finding | None:
    xs = h.series("kl")
    if not xs or xs[-1] is None:
        return None
    prev = [x for x in xs[-t.kl_window - 1 : -1] if x is not None]
    if len(prev) < 3:
        return None
    base = statistics.median(prev)
    now = xs[-1]
    limit = max(t.kl_min, t.kl_spike_factor * base)
    return Finding(
        "kl_spike",
        now > limit,
        now,
        limit,
        f"KL to the reference jumped to {now:.3g} (median of the previous steps {base:.3g})",
        RULE_INFO["kl_spike"].fix,
    )


def length_collapse(h: History, t: Thresholds) -> Finding | None:
    xs = h.values("completions/mean_length")
    if len(xs) < t.length_min_steps:
        return None
    means = [_mean(xs[i : i + RECENT]) for i in range(len(xs) - RECENT + 1)]
    peak, now = max(means[:-1]), means[-1]
    limit = t.length_collapse_ratio * peak
    return Finding(
        "length_collapse",
        now < limit,
        now,
        limit,
        f"completions shrank to {now:.0f} tokens on average (peak {peak:.0f}): the model may be skipping its reasoning",
        RULE_INFO["length_collapse"].fix,
    )


def length_at_limit(h: History, t: Thresholds) -> Finding | None:
    xs = h.values("completions/mean_length")
    if len(xs) < RECENT or not h.max_completion_length:
        return None
    now = _mean(xs[-RECENT:])
    limit = t.length_limit_frac * h.max_completion_length
    return Finding(
        "length_at_limit",
        now >= limit,
        now,
        limit,
        f"completions average {now:.0f} tokens against a limit of {h.max_completion_length}: "
        "answers run into max_completion_length",
        RULE_INFO["length_at_limit"].fix,
    )


def truncation(h: History, t: Thresholds) -> Finding | None:
    xs = h.values("completions/clipped_ratio")
    if len(xs) < RECENT:
        return None
    now = _mean(xs[-RECENT:])
    return Finding(
        "truncation",
        now > t.truncation_frac,
        now,
        t.truncation_frac,
        f"{now:.0%} of completions were cut off at max_completion_length"
        + (f" ({h.max_completion_length} tokens)" if h.max_completion_length else ""),
        RULE_INFO["truncation"].fix,
    )


def reward_hacking(h: History, t: Thresholds) -> Finding | None:
    w = t.hacking_window
    if len(h.steps) < w:
        return None
    correct = [c for c in h.correct[-w:] if c is not None]
    if len(correct) < 4:
        return None
    half = len(correct) // 2
    correct_rise = _mean(correct[-half:]) - _mean(correct[:half])
    names = _reward_names(h.metrics[-w:])
    best: tuple[float, str] | None = None
    for name in filter(is_format_reward, names):
        xs = [x for x in h.series(f"rewards/{name}/mean")[-w:] if x is not None]
        if len(xs) < 4:
            continue
        k = len(xs) // 2
        rise = _mean(xs[-k:]) - _mean(xs[:k])
        if best is None or rise > best[0]:
            best = (rise, name)
    if best is None:
        return None
    rise, name = best
    firing = rise >= t.hacking_format_rise and correct_rise <= t.hacking_correct_rise
    return Finding(
        "reward_hacking",
        firing,
        rise,
        t.hacking_format_rise,
        f"format reward '{name}' rose by {rise:.2f} over {w} steps while the correct fraction "
        f"moved {correct_rise:+.2f}: the policy is learning the format, not the math",
        f"raise the correctness weight or lower '{name}' in [rewards] (reward weights are a live knob, key k)",
    )


def non_finite(h: History, t: Thresholds) -> Finding | None:
    if not h.metrics:
        return None
    m = h.metrics[-1]
    bad = [k for k in ("loss", "grad_norm") if k in m and (_num(m[k]) is None or not math.isfinite(_num(m[k])))]
    return Finding(
        "non_finite",
        bool(bad),
        None,
        None,
        f"{' and '.join(bad) or 'loss'} is NaN or infinite at step {h.step}: the update is garbage",
        RULE_INFO["non_finite"].fix,
    )


def reward_failures(h: History, t: Thresholds) -> Finding | None:
    if not h.steps:
        return None
    since = h.step - t.reward_failure_steps
    recent = [(s, name, n) for s, name, n in h.failures if s > since]
    total = sum(n for _, _, n in recent)
    names = sorted({name for _, name, _ in recent})
    return Finding(
        "reward_failures",
        total >= t.reward_failure_min,
        float(total),
        float(t.reward_failure_min),
        f"reward {', '.join(repr(n) for n in names) or '?'} failed on {total} completion(s) in the "
        f"last {t.reward_failure_steps} steps (scored 0)",
        RULE_INFO["reward_failures"].fix,
    )


def _flat(metrics: list[dict[str, Any]], name: str) -> bool | None:
    """Whether a reward scored every completion alike in these steps (std 0, same mean); None if unknown."""
    stds = [_num(m.get(f"rewards/{name}/std")) for m in metrics]
    means = [_num(m.get(f"rewards/{name}/mean")) for m in metrics]
    if any(x is None or not math.isfinite(x) for x in stds + means):
        return None
    return max(stds) <= 1e-9 and max(means) - min(means) <= 1e-9


def constant_reward(h: History, t: Thresholds) -> Finding | None:
    n = t.constant_reward_steps
    if len(h.metrics) < n:
        return None
    recent = h.metrics[-n:]
    names = _reward_names(recent)
    verdicts = {name: _flat(recent, name) for name in names}
    flat = [name for name, v in verdicts.items() if v is True]
    varying = [name for name, v in verdicts.items() if v is False]
    if not flat:
        return Finding("constant_reward", False, None, float(n))
    value = _num(recent[-1].get(f"rewards/{flat[0]}/mean"))
    why = (
        "it never matched: check its pattern against how completions end ([train] stop_strings, final_newline)"
        if value == 0
        else "it pays every completion the same, so it can't tell them apart"
    )
    return Finding(
        "constant_reward",
        bool(varying),
        value,
        float(n),
        f"reward {', '.join(repr(x) for x in flat)} scored {value:g} on every completion for {n} steps "
        f"while {varying[0] if varying else 'no other reward'!r} varied: {why}",
        RULE_INFO["constant_reward"].fix,
    )


RULES: dict[str, Rule] = {
    "zero_std": zero_std,
    "entropy_collapse": entropy_collapse,
    "kl_spike": kl_spike,
    "length_collapse": length_collapse,
    "length_at_limit": length_at_limit,
    "truncation": truncation,
    "reward_hacking": reward_hacking,
    "non_finite": non_finite,
    "reward_failures": reward_failures,
    "constant_reward": constant_reward,
}
assert set(RULES) == set(RULE_INFO), "every rule needs its RuleInfo (meaning and fix) for the help screen"


def rules_table(t: Thresholds = DEFAULT) -> str:
    """Every rule with what its firing means and the fix, at the given thresholds (plain text)."""
    lines = []
    for name, info in RULE_INFO.items():
        meaning, fix = info.describe(t)
        lines.append(f"    {name}: {meaning}.\n        fix: {fix}")
    return "\n".join(lines)


def rules_markdown(t: Thresholds = DEFAULT) -> str:
    """The same, as a Markdown table (the `health` event's documentation)."""
    lines = ["| rule | fires when | fix |", "|---|---|---|"]
    for name, info in RULE_INFO.items():
        meaning, fix = info.describe(t)
        lines.append(f"| `{name}` | {meaning} | {fix} |")
    return "\n".join(lines)


__doc__ += "\nThe rules at the default thresholds:\n\n" + rules_table() + "\n"


class HealthMonitor:
    """Feeds events through the rules; `add` returns the `health` events to write (changes only)."""

    def __init__(
        self, thresholds: Thresholds = DEFAULT, max_completion_length: int | None = None, dynamic_sampling: bool = False
    ) -> None:
        self.t = thresholds
        self.h = History(max_completion_length=max_completion_length, dynamic_sampling=dynamic_sampling)
        self.active: dict[str, dict[str, Any]] = {}  # rule -> its last "warn" event fields
        self.latest: dict[str, Finding] = {}  # rule -> its verdict at the latest step (what it says now)
        self._quiet: dict[str, int] = {}  # firing rule -> quiet steps in a row

    @classmethod
    def for_run_start(cls, ev: dict[str, Any], thresholds: Thresholds = DEFAULT) -> HealthMonitor:
        """Settings from a run_start event's resolved config."""
        cfg = ev.get("config") or {}
        train, cur = cfg.get("train") or {}, cfg.get("curriculum") or {}
        return cls(thresholds, train.get("max_completion_length"), bool(cur.get("dynamic_sampling")))

    def add(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        typ = ev.get("type")
        if typ == "reward_failure":
            self.h.failures.append((int(ev.get("step") or 0), str(ev.get("reward", "?")), int(ev.get("count") or 0)))
            return []
        if typ != "step" or not isinstance(ev.get("step"), int):
            return []
        step = ev["step"]
        if self.h.steps and step <= self.h.steps[-1]:  # a resumed engine repeats steps after its checkpoint
            cut = next(i for i, s in enumerate(self.h.steps) if s >= step)
            del self.h.steps[cut:], self.h.metrics[cut:], self.h.correct[cut:]
        self.h.steps.append(step)
        self.h.metrics.append(ev.get("metrics") or {})
        self.h.correct.append(_num(ev.get("correct_frac")))
        out = []
        for name, rule in RULES.items():
            f = rule(self.h, self.t)
            if f is None:
                continue
            self.latest[name] = f
            if f.firing:
                self._quiet.pop(name, None)
                if name not in self.active:
                    self.active[name] = f.as_event(step)
                    out.append(self.active[name])
            elif name in self.active:
                self._quiet[name] = self._quiet.get(name, 0) + 1
                if self._quiet[name] >= self.t.clear_after:
                    del self.active[name], self._quiet[name]
                    out.append(f.as_event(step))
        return out

    def extend(self, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [h for ev in events for h in self.add(ev)]

    def resume(self, recorded: list[dict[str, Any]], checkpoint_step: int) -> list[dict[str, Any]]:
        """A resumed engine's monitor: the recorded history up to its checkpoint, so the rules see the whole run.

        The recorded steps are fed without writing anything (their health events are in the log). Returns what the
        log must gain to agree: "ok" for a warning raised in the steps after the checkpoint, which the resumed
        engine rewinds, and "warn" again for a rule that fires at the checkpoint but was cleared after it.
        """
        upto = [
            ev
            for ev in recorded
            if ev.get("type") in ("step", "reward_failure")
            and isinstance(ev.get("step"), int)
            and ev["step"] <= checkpoint_step
        ]
        self.extend(upto)
        logged = active_warnings(recorded)
        out = [
            {
                "step": checkpoint_step,
                "rule": rule,
                "status": "ok",
                "value": None,
                "threshold": None,
                "diagnosis": f"the run resumed from its step-{checkpoint_step} checkpoint, before this warning",
                "fix": "",
            }
            for rule in logged
            if rule not in self.active
        ]
        return out + [dict(ev, step=checkpoint_step) for rule, ev in self.active.items() if rule not in logged]


def _replay(events: Iterable[dict[str, Any]], thresholds: Thresholds) -> tuple[HealthMonitor | None, list[dict]]:
    """A recorded run fed through a monitor (set up from the first run_start): the monitor, the health events."""
    mon: HealthMonitor | None = None
    out = []
    for ev in events:
        if ev.get("type") == "run_start":
            mon = mon or HealthMonitor.for_run_start(ev, thresholds)
            continue
        if mon is None:
            mon = HealthMonitor(thresholds)
        out += mon.add(ev)
    return mon, out


def check_run(events: Iterable[dict[str, Any]], thresholds: Thresholds = DEFAULT) -> list[dict[str, Any]]:
    """The health events a recorded run would get (for runs recorded before health checks, and for tests)."""
    return _replay(events, thresholds)[1]


def latest_findings(events: Iterable[dict[str, Any]], thresholds: Thresholds = DEFAULT) -> dict[str, Finding]:
    """Rule -> its verdict at the run's last step: the value a summary quotes for a rule still firing at the end
    (a `health` event holds the value when the rule started firing)."""
    mon = _replay(events, thresholds)[0]
    return dict(mon.latest) if mon is not None else {}


def active_warnings(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rule -> its latest `health` event, for rules whose latest status is "warn" (folds recorded events)."""
    active: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") == "health":
            if ev.get("status") == "warn":
                active[str(ev.get("rule"))] = ev
            else:
                active.pop(str(ev.get("rule")), None)
    return active


def warning_line(ev: dict[str, Any]) -> str:
    """One line for a UI: the diagnosis and the fix."""
    return f"{ev.get('rule')}: {ev.get('diagnosis')} -> {ev.get('fix')}"
