"""What the dashboard knows about a run, folded from its events (no Textual here).

The app feeds every new event from events.jsonl into `RunModel.apply`, which
returns the parts of the screen that changed ("curves", "status", "memory",
"commands", "error"), so each widget repaints only when its data moved. The
model keeps what the panels draw and nothing else: per-step series for the
curves, a bounded memory history, the latest state, checkpoint and command
acknowledgements, errors.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Series the curves draw, by the key they have in a step event's metrics.
REWARD = "reward"
MEAN_LENGTH = "completions/mean_length"
CLIPPED = "completions/clipped_ratio"
ZERO_STD = "frac_reward_zero_std"
# with dynamic sampling: the zero-std fraction of the batch as first sampled, before filtering
ZERO_STD_BEFORE = "dynamic_sampling/frac_reward_zero_std_before"
CORRECT = "correct_frac"  # top-level field of the step event, not a TRL metric
STEP_TIME = "step_time_s"
TOKENS_PER_S = "tokens_per_s"

FIXED_SERIES = (REWARD, MEAN_LENGTH, CLIPPED, ZERO_STD, CORRECT, STEP_TIME, TOKENS_PER_S)

ACTIVE_STATES = ("starting", "loading_model", "running", "pausing", "paused", "checkpointing", "stopping")
MEMORY_HISTORY = 240


def reward_key(name: str) -> str:
    return f"rewards/{name}/mean"


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass
class CommandAck:
    id: str
    command: str
    status: str  # sent (by us, not yet acknowledged), accepted, done, rejected
    detail: str = ""
    t: float = 0.0


@dataclass
class RunModel:
    run_start: dict[str, Any] | None = None
    run_starts: int = 0
    state: str = "starting"
    state_detail: str = ""
    dataset: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    last_step: dict[str, Any] | None = None
    steps: list[int] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    reward_names: list[str] = field(default_factory=list)
    memory: deque = field(default_factory=lambda: deque(maxlen=MEMORY_HISTORY))
    last_checkpoint: dict[str, Any] | None = None
    checkpoints: int = 0
    commands: dict[str, CommandAck] = field(default_factory=dict)
    last_command: CommandAck | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    reward_failures: deque = field(default_factory=lambda: deque(maxlen=20))
    run_end: dict[str, Any] | None = None
    curves_version: int = 0  # bumped whenever a series changes (plots redraw on change only)
    # issue 16 (monitor): health warnings (rule -> latest "warn" event) and live-knob changes (curve markers)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    knob_changes: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------- reading
    @property
    def preset(self) -> str:
        return (self.run_start or {}).get("preset") or "?"

    @property
    def max_steps(self) -> int | None:
        if self.last_step and self.last_step.get("max_steps"):
            return int(self.last_step["max_steps"])
        return (self.run_start or {}).get("max_steps")

    @property
    def step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def active(self) -> bool:
        """The event log says the engine is still working (it may still have died without saying so)."""
        return self.run_end is None and self.state in ACTIVE_STATES

    @property
    def failed(self) -> bool:
        return self.state == "failed" or (self.run_end or {}).get("status") == "failed"

    def column(self, key: str) -> list[float | None]:
        return self.series.get(key, [])

    def pending_commands(self) -> list[CommandAck]:
        return [c for c in self.commands.values() if c.status in ("sent", "accepted")]

    # ------------------------------------------------------------- writing
    def note_sent(self, cid: str, command: str, t: float, detail: str = "") -> None:
        ack = CommandAck(cid, command, "sent", detail, t)
        self.commands[cid] = ack
        self.last_command = ack

    def apply(self, events: list[dict[str, Any]]) -> set[str]:
        changed: set[str] = set()
        for ev in events:
            kind = ev.get("type")
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                changed |= handler(ev)
        return changed

    def _on_run_start(self, ev: dict) -> set[str]:
        self.run_start = ev
        self.run_starts += 1
        self.run_end = None
        names = ev.get("reward_names")
        if isinstance(names, list):
            for n in names:
                if n not in self.reward_names:
                    self.reward_names.append(n)
        return {"status", "curves"}

    def _on_state(self, ev: dict) -> set[str]:
        self.state = str(ev.get("state") or "?")
        self.state_detail = str(ev.get("detail") or "")
        return {"status"}

    def _on_dataset(self, ev: dict) -> set[str]:
        self.dataset = ev
        return {"status"}

    def _on_model(self, ev: dict) -> set[str]:
        self.model = ev
        return {"status"}

    def _on_step(self, ev: dict) -> set[str]:
        step = ev.get("step")
        if not isinstance(step, int):
            return set()
        if self.steps and step <= self.steps[-1]:
            # A resumed engine re-ran steps after its checkpoint: the newer record wins.
            cut = bisect.bisect_left(self.steps, step)
            del self.steps[cut:]
            for col in self.series.values():
                del col[cut:]
        metrics = ev.get("metrics") or {}
        values = {REWARD: metrics.get(REWARD), MEAN_LENGTH: metrics.get(MEAN_LENGTH),
                  CLIPPED: metrics.get(CLIPPED), ZERO_STD: metrics.get(ZERO_STD),
                  ZERO_STD_BEFORE: metrics.get(ZERO_STD_BEFORE),
                  CORRECT: ev.get(CORRECT), STEP_TIME: ev.get(STEP_TIME), TOKENS_PER_S: ev.get(TOKENS_PER_S)}
        for key, value in metrics.items():
            if key.startswith("rewards/") and key.endswith("/mean"):
                values[key] = value
                name = key[len("rewards/"):-len("/mean")]
                if name not in self.reward_names:
                    self.reward_names.append(name)
        for key, value in metrics.items():  # issue 16: every metric TRL logs gets a series (curve groups)
            values.setdefault(key, value)
        n = len(self.steps)
        self.steps.append(step)
        for key, value in values.items():
            col = self.series.get(key)
            if col is None:
                col = self.series[key] = [None] * n
            col.append(_num(value))
        for col in self.series.values():
            if len(col) < n + 1:
                col.append(None)
        self.last_step = ev
        self.curves_version += 1
        return {"curves", "status"}

    def _on_memory(self, ev: dict) -> set[str]:
        self.memory.append(ev)
        return {"memory"}

    def _on_checkpoint(self, ev: dict) -> set[str]:
        self.last_checkpoint = ev
        self.checkpoints += 1
        return {"status"}

    def _on_command(self, ev: dict) -> set[str]:
        cid = str(ev.get("id") or "")
        prev = self.commands.get(cid)
        ack = CommandAck(cid, str(ev.get("command") or "?"), str(ev.get("status") or "?"),
                         str(ev.get("detail") or ""), float(ev.get("t") or 0.0))
        if prev is not None and prev.status == "done" and ack.status == "accepted":
            return set()
        self.commands[cid] = ack
        self.last_command = ack
        if len(self.commands) > 200:  # bounded: forget the oldest acknowledgements
            for old in list(self.commands)[:100]:
                del self.commands[old]
        return {"commands", "status"}

    def _on_reward_failure(self, ev: dict) -> set[str]:
        self.reward_failures.append(ev)
        return {"status"}

    def _on_error(self, ev: dict) -> set[str]:
        self.errors.append(ev)
        del self.errors[:-10]
        return {"error", "status"}

    # issue 16 (monitor): port into the rundir/state.py fold at merge
    def _on_health(self, ev: dict) -> set[str]:
        rule = str(ev.get("rule") or "?")
        if ev.get("status") == "warn":
            self.health[rule] = ev
        else:
            self.health.pop(rule, None)
        return {"health"}

    def _on_knobs(self, ev: dict) -> set[str]:
        step = ev.get("step")
        if isinstance(step, int):
            self.knob_changes = [k for k in self.knob_changes if k["step"] < step] + [ev]  # a resume rewinds
            self.curves_version += 1
        return {"curves", "knobs"}

    def knobs_now(self) -> dict[str, Any]:
        """The live knobs' current values: the config at the last run_start, then every change since."""
        from rundir.knobs import REWARD_WEIGHTS, knobs_from_config
        start = self.run_start or {}
        now = knobs_from_config(start.get("config") or {}, list(start.get("reward_names") or self.reward_names))
        for ev in self.knob_changes:
            if float(ev.get("t") or 0) < float(start.get("t") or 0):
                continue  # a resumed engine reads the changes back from config.json
            for k, v in (ev.get("values") or {}).items():
                if k == REWARD_WEIGHTS:
                    now.setdefault(k, {}).update(v)
                else:
                    now[k] = v
        return now

    def _on_run_end(self, ev: dict) -> set[str]:
        if ev.get("status") == "switched":
            # The engine re-executes itself under another preset (same pid, same run): not an end.
            self.state_detail = f"switching to preset {ev.get('next_preset', '?')}"
            return {"status"}
        self.run_end = ev
        if ev.get("status") == "failed":
            self.state = "failed"
        return {"status", "error"}


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(max(0.0, float(seconds))))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def downsample(xs: list[int], ys: list[float | None], max_points: int) -> tuple[list[float], list[float]]:
    """Bucket a series to at most max_points points (mean per bucket), dropping missing values.

    Curves are drawn at the widget's resolution: a 20k-step run costs the same
    to draw as a 200-step one.
    """
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if max_points < 1 or len(pts) <= max_points:
        return [float(x) for x, _ in pts], [y for _, y in pts]
    out_x, out_y = [], []
    n = len(pts)
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        if hi <= lo:
            continue
        chunk = pts[lo:hi]
        out_x.append(sum(p[0] for p in chunk) / len(chunk))
        out_y.append(sum(p[1] for p in chunk) / len(chunk))
    return out_x, out_y


def smooth(ys: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard-style debiased exponential moving average; missing values stay missing."""
    out: list[float | None] = []
    last, norm = 0.0, 0.0
    for y in ys:
        if y is None:
            out.append(None)
            continue
        last = last * weight + (1 - weight) * y
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out
