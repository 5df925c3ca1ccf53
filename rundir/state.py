"""The one fold of the event stream: what a run looks like after the events read so far.

Every reader reads a run through `RunState`: the dashboard applies each new
batch of events live and repaints only what `apply` says changed ("curves",
"status", "memory", "commands", "error"); the headless printer and its run
summary; the browser's run list (`fold_run`: config.json plus the head and the
tail of a long log, so listing many runs stays quick, and every step's reward
for the windowed means); the tests. Events are the plain dicts of events.jsonl
(records: rundir.events); missing and unknown fields are tolerated so old logs
and logs from newer engines stay readable.

Time: a run can span several engine processes (`--resume`, a preset switch).
`elapsed(now)` adds them up from the events' timestamps (each engine start
counts from its `run_start` to its last event; the re-exec of a switch counts
too), and with `now` it ticks between steps while the engine is active.
`eta(now)` is None once the run is over.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_tui.rundir.event_reader import iter_events, open_log, parse_lines
from grpo_tui.rundir.events import ACTIVE_STATES, RECORDS, State
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.names import SCHEMA_VERSION
from grpo_tui.rundir.phases import add_phases
from grpo_tui.rundir.summary_stats import Trend, trend

# Series kept per step, by the key they have in a step event's metrics.
REWARD = "reward"
MEAN_LENGTH = "completions/mean_length"
CLIPPED = "completions/clipped_ratio"
ZERO_STD = "frac_reward_zero_std"
# with dynamic sampling: the zero-std fraction of the batch as first sampled, before filtering
ZERO_STD_BEFORE = "dynamic_sampling/frac_reward_zero_std_before"
CORRECT = "correct_frac"  # top-level field of the step event, not a TRL metric
STEP_TIME = "step_time_s"
TOKENS_PER_S = "tokens_per_s"
POLICY_METRICS = ("entropy", "kl", "grad_norm")  # shown by the headless line and summary

MEMORY_HISTORY = 240
# a run list folds only this much of a long log: the head (run_start) and the tail (the latest state);
# of the rest it reads only the step rewards
HEAD_BYTES = 64 << 10
TAIL_BYTES = 256 << 10


def reward_key(name: str) -> str:
    return f"rewards/{name}/mean"


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass
class CommandStatus:
    id: str
    command: str
    status: str  # sent (by this UI, not yet acknowledged), accepted, done, rejected
    detail: str = ""
    t: float = 0.0


@dataclass
class RunState:
    run_start: dict[str, Any] | None = None  # the latest engine start
    run_starts: int = 0
    started: float | None = None  # unix time of the first run_start
    state: str = State.STARTING.value
    state_detail: str = ""
    dataset: dict[str, Any] | None = None
    model_info: dict[str, Any] | None = None  # the `model` event
    last_step: dict[str, Any] | None = None
    steps: list[int] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)  # key -> one value per entry of steps
    reward_names: list[str] = field(default_factory=list)
    memory: deque = field(default_factory=lambda: deque(maxlen=MEMORY_HISTORY))
    last_checkpoint: dict[str, Any] | None = None
    checkpoints: int = 0
    commands: dict[str, CommandStatus] = field(default_factory=dict)
    last_command: CommandStatus | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # the last 10
    reward_failures: deque = field(default_factory=lambda: deque(maxlen=20))
    reward_failure_counts: dict[str, int] = field(default_factory=dict)  # reward -> completions, whole run
    phase_s: dict[str, float] = field(default_factory=dict)  # seconds per step phase, summed over steps
    evals: list[dict[str, Any]] = field(default_factory=list)
    stage: dict[str, Any] | None = None  # the latest `stage` event
    sft_stage: dict[str, Any] | None = None  # the latest `stage` event of the SFT stage
    sft_losses: list[float] = field(default_factory=list)
    curriculum: dict[str, Any] | None = None
    run_end: dict[str, Any] | None = None
    unknown_types: int = 0
    newer_schema: int = 0  # events written by a newer schema than this reader knows
    newest_schema: int = SCHEMA_VERSION
    last_t: float | None = None
    # set by readers that know more than the log: the engine process is gone without a run_end
    engine_gone: bool = False
    # what a run list adds (fold_run): where the run is, its config.json, what could not be read, and the
    # windowed means of every step's reward (its series holds only the last step)
    path: Path | None = None
    reward_trend: Trend | None = None
    config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # elapsed time, summed over engine starts
    _closed_s: float = 0.0
    _seg_start: float | None = None
    _seg_last: float | None = None
    _switching: bool = False
    # a checkpoint accepted mid-step: the engine is still running the step until it ends
    _checkpoint_pending: bool = False
    _metric_keys: tuple = ()
    _reward_keys: list[str] = field(default_factory=list)
    _before_checkpointing: str = State.RUNNING.value
    # health warnings (rundir.health, written by the engine as `health` events) and live-knob changes
    health: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule -> latest "warn" event, while it fires
    health_fired: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule -> first "warn" event of the run
    knob_changes: list[dict[str, Any]] = field(default_factory=list)  # `knobs` events (curve markers)

    # ------------------------------------------------------------- reading
    @property
    def preset(self) -> str:
        name = (self.run_start or {}).get("preset") or ((self.config or {}).get("preset") or {}).get("name")
        return str(name) if name else "?"

    @property
    def model_name(self) -> str:
        name = (
            (self.model_info or {}).get("name")
            or (self.run_start or {}).get("model")
            or ((self.config or {}).get("model") or {}).get("name")
        )
        return str(name) if name else "?"

    @property
    def max_steps(self) -> int | None:
        for src in (self.last_step, self.run_start, ((self.config or {}).get("train") or {})):
            v = (src or {}).get("max_steps")
            if isinstance(v, int) and v:
                return v
        return None

    @property
    def step(self) -> int:
        return self.steps[-1] if self.steps else 0

    @property
    def metrics(self) -> dict[str, Any]:
        m = (self.last_step or {}).get("metrics")
        return m if isinstance(m, dict) else {}

    @property
    def last_memory(self) -> dict[str, Any]:
        return self.memory[-1] if self.memory else {}

    @property
    def active(self) -> bool:
        """The event log says the engine is still working (it may still have died without saying so)."""
        return self.run_end is None and self.state in ACTIVE_STATES

    @property
    def failed(self) -> bool:
        return self.state == State.FAILED or (self.run_end or {}).get("status") == "failed"

    @property
    def status(self) -> str:
        """One word for a run list: how the run ended, its state, or `gone` (active by its log, no engine)."""
        if self.run_end is not None:
            return str(self.run_end.get("status") or self.state)
        if self.engine_gone and self.active:
            return "gone"
        return self.state

    def outcome(self, exit_code: int | None = None) -> str:
        """How the run ended, for a summary; exit_code is the engine process's, when known."""
        if self.run_end is not None or not self.active:
            return self.status
        if exit_code is not None and exit_code < 0:
            return f"killed by signal {-exit_code} at step {self.step} (no run_end)"
        if exit_code:
            return f"failed: the engine exited with code {exit_code} without a run_end"
        if exit_code == 0 or self.engine_gone:
            return f"gone: the engine stopped without a run_end (last state {self.state})"
        return self.state

    def column(self, key: str) -> list[float | None]:
        return self.series.get(key, [])

    def values(self, key: str) -> list[float]:
        """A series without its missing values (what summaries average)."""
        return [x for x in self.series.get(key, ()) if x is not None]

    def pending_commands(self) -> list[CommandStatus]:
        return [c for c in self.commands.values() if c.status in ("sent", "accepted")]

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds the run's engines have run, summed over engine starts.

        With `now` (unix time) and the run still active, the current engine start counts up to now,
        so a UI can tick between steps; otherwise up to its last event. None before any timestamp.
        """
        if self._seg_start is None:
            return self._closed_s if self.last_t is not None else None
        end = now if now is not None and self.active and not self.engine_gone else self._seg_last
        return self._closed_s + max(0.0, (end or self._seg_start) - self._seg_start)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds to max_steps from the last step's estimate (counting down from it while running)."""
        if not self.active or self.engine_gone or self.last_step is None:
            return None
        eta, t = _num(self.last_step.get("eta_s")), _num(self.last_step.get("t"))
        if eta is None:
            return None
        if now is not None and t is not None and self.state == State.RUNNING:
            eta -= max(0.0, now - t)
        return max(0.0, eta)

    # ------------------------------------------------------------- writing
    def note_sent(self, cid: str, command: str, t: float, detail: str = "") -> None:
        """A UI sent a command (shown as `sent` until the engine acknowledges it)."""
        ack = CommandStatus(cid, str(command), "sent", detail, t)
        self.commands[cid] = ack
        self.last_command = ack

    def apply(self, events: Iterable[dict[str, Any]]) -> set[str]:
        """Fold events in; returns the parts of a screen that changed."""
        changed: set[str] = set()
        for ev in events:
            changed |= self.add(ev)
        return changed

    def add(self, ev: dict[str, Any]) -> set[str] | frozenset[str]:
        """Fold one event in; returns the parts of a screen that changed. (The dashboard applies events live
        and a run list folds many logs: this runs for every event, so it stays lean.)"""
        kind = ev.get("type")
        v = ev.get("v")
        if v != SCHEMA_VERSION and isinstance(v, int) and v > SCHEMA_VERSION:
            self.newer_schema += 1
            self.newest_schema = max(self.newest_schema, v)
        t = ev.get("t")
        if t.__class__ is float or t.__class__ is int:
            self.last_t = t
            if kind != "run_start":
                if self._seg_start is None and self.run_end is None:
                    self._seg_start = t  # a log read from its middle: count from what we see
                self._seg_last = t
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind not in RECORDS:
                self.unknown_types += 1
            return _NOTHING
        return handler(self, ev)

    def _close_segment(self, end: float | None) -> None:
        if self._seg_start is not None and end is not None:
            self._closed_s += max(0.0, end - self._seg_start)
        self._seg_start = self._seg_last = None

    def _on_run_start(self, ev: dict) -> set[str]:
        t = _num(ev.get("t"))
        if t is not None:
            if self._switching and self._seg_start is not None:
                self._seg_last = t  # same engine process, re-executed under the new preset: time goes on
            else:
                self._close_segment(self._seg_last)  # an engine that died without run_end ends at its last event
                self._seg_start = self._seg_last = t
            if self.started is None:
                self.started = t
        self._switching = False
        self._checkpoint_pending = False
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
        state = str(ev.get("state") or "?")
        if state == State.CHECKPOINTING and "step" not in ev:
            # announced when the command was accepted: the checkpoint is written when the step ends
            self._checkpoint_pending = True
            return {"status"}
        if state == State.CHECKPOINTING and self.state != State.CHECKPOINTING:
            self._before_checkpointing = self.state
        self.state = state
        self.state_detail = str(ev.get("detail") or "")
        return {"status"}

    def _on_dataset(self, ev: dict) -> set[str]:
        self.dataset = ev
        return {"status"}

    def _on_model(self, ev: dict) -> set[str]:
        self.model_info = ev
        return {"status"}

    def _on_step(self, ev: dict) -> set[str]:
        step = ev.get("step")
        if not isinstance(step, int):
            return set()
        if self._checkpoint_pending:
            self._checkpoint_pending = False
            if self.state != State.CHECKPOINTING:
                self._before_checkpointing = self.state
            self.state = State.CHECKPOINTING.value
        if self.steps and step <= self.steps[-1]:
            # A resumed engine re-ran steps after its checkpoint: the newer record wins.
            cut = bisect.bisect_left(self.steps, step)
            del self.steps[cut:]
            for col in self.series.values():
                del col[cut:]
        metrics = ev.get("metrics")
        if not isinstance(metrics, dict):
            metrics = {}
        keys = tuple(metrics)
        if keys != self._metric_keys:  # the same keys step after step: find the reward columns once
            self._metric_keys = keys
            self._reward_keys = [k for k in keys if k.startswith("rewards/") and k.endswith("/mean")]
            for k in self._reward_keys:
                name = k[len("rewards/") : -len("/mean")]
                if name not in self.reward_names:
                    self.reward_names.append(name)
        values = {
            REWARD: metrics.get(REWARD),
            MEAN_LENGTH: metrics.get(MEAN_LENGTH),
            CLIPPED: metrics.get(CLIPPED),
            ZERO_STD: metrics.get(ZERO_STD),
            ZERO_STD_BEFORE: metrics.get(ZERO_STD_BEFORE),
            CORRECT: ev.get(CORRECT),
            STEP_TIME: ev.get(STEP_TIME),
            TOKENS_PER_S: ev.get(TOKENS_PER_S),
        }
        for k in self._reward_keys:
            values[k] = metrics[k]
        for key, value in metrics.items():  # every metric TRL logs gets a series (the curve groups)
            values.setdefault(key, value)
        add_phases(self.phase_s, ev.get("phase_s"))
        n = len(self.steps)
        self.steps.append(step)
        series = self.series
        for key, value in values.items():
            col = series.get(key)
            if col is None:
                col = series[key] = [None] * n
            # _num, inlined: this runs for every series of every step
            col.append(value if value.__class__ is float else float(value) if value.__class__ is int else None)
        if len(series) != len(values):  # a column this step lacks gets a gap
            for col in series.values():
                if len(col) < n + 1:
                    col.append(None)
        self.last_step = ev
        return {"curves", "status"}

    def _on_memory(self, ev: dict) -> set[str]:
        self.memory.append(ev)
        return {"memory"}

    def _on_checkpoint(self, ev: dict) -> set[str]:
        self.last_checkpoint = ev
        self.checkpoints += 1
        self._checkpoint_pending = False
        if self.state == State.CHECKPOINTING:  # written: back to what the engine was doing
            self.state = self._before_checkpointing
        return {"status"}

    def _on_command(self, ev: dict) -> set[str]:
        cid = str(ev.get("id") or "")
        prev = self.commands.get(cid)
        ack = CommandStatus(
            cid,
            str(ev.get("command") or "?"),
            str(ev.get("status") or "?"),
            str(ev.get("detail") or ""),
            float(ev.get("t") or 0.0),
        )
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
        name = str(ev.get("reward") or "?")
        count = ev.get("count")
        self.reward_failure_counts[name] = self.reward_failure_counts.get(name, 0) + (
            int(count) if isinstance(count, (int, float)) else 0
        )
        return {"status"}

    def _on_error(self, ev: dict) -> set[str]:
        self.errors.append(ev)
        del self.errors[:-10]
        return {"error", "status"}

    def _on_eval(self, ev: dict) -> set[str]:
        self.evals.append(ev)
        return {"status"}

    def _on_stage(self, ev: dict) -> set[str]:
        self.stage = ev
        if ev.get("stage") == "sft":
            self.sft_stage = ev
        return {"status"}

    def _on_sft_step(self, ev: dict) -> set[str]:
        loss = _num(ev.get("loss"))
        if loss is not None:
            self.sft_losses.append(loss)
        return {"status"}

    def _on_curriculum(self, ev: dict) -> set[str]:
        self.curriculum = ev
        return {"status"}

    def _on_health(self, ev: dict) -> set[str]:
        rule = str(ev.get("rule") or "?")
        if ev.get("status") == "warn":
            self.health[rule] = ev
            self.health_fired.setdefault(rule, ev)
        else:
            self.health.pop(rule, None)
        return {"health"}

    def _on_knobs(self, ev: dict) -> set[str]:
        step = ev.get("step")
        if isinstance(step, int):
            self.knob_changes = [k for k in self.knob_changes if k["step"] < step] + [ev]  # a resume rewinds
        return {"curves", "knobs"}

    def knobs_now(self) -> dict[str, Any]:
        """The live knobs' current values: the config at the last run_start, then every change since."""
        from grpo_tui.rundir.knobs import REWARD_WEIGHTS, knobs_from_config

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

    @property
    def policy(self) -> dict[str, list[float]]:
        """Entropy, KL and grad norm per step (finite values only; a metric never logged is absent)."""
        out = {}
        for key in POLICY_METRICS:
            xs = [x for x in self.values(key) if math.isfinite(x)]
            if xs:
                out[key] = xs
        return out

    def _on_run_end(self, ev: dict) -> set[str]:
        self._checkpoint_pending = False
        if ev.get("status") == "switched":
            # The engine re-executes itself under another preset (same pid, same run): not an end.
            self._switching = True
            self.state_detail = f"switching to preset {ev.get('next_preset', '?')}"
            return {"status"}
        self._close_segment(_num(ev.get("t")) or self._seg_last)
        self.run_end = ev
        if ev.get("status") == "failed":
            self.state = State.FAILED.value
        return {"status", "error"}

    @property
    def sft_status(self) -> str | None:
        return (self.sft_stage or {}).get("status")


# event type -> RunState._on_<type>: one dict lookup per event
_HANDLERS = {name[len("_on_") :]: fn for name, fn in vars(RunState).items() if name.startswith("_on_")}
_NOTHING: frozenset[str] = frozenset()


def summarize(events: Iterable[dict[str, Any]]) -> RunState:
    """The fold of a whole list of events."""
    s = RunState()
    s.apply(events)
    return s


def _head_and_tail(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """(events from the head and the tail of a log, damaged lines skipped, whether that is the whole log)."""
    try:
        fd = open_log(path)  # None for a FIFO or device planted there: never a reader that blocks
        if fd is None:
            return [], 0, True
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(fd).st_size
            if size <= HEAD_BYTES + TAIL_BYTES:
                events, _, skipped = parse_lines(f.read())  # a half-written last event is left out
                return events, skipped, True
            head = f.read(HEAD_BYTES)
            f.seek(size - TAIL_BYTES)
            tail = f.read()
    except OSError:
        return [], 0, True
    head = head[: head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1 :]  # the first line of the tail block is cut
    a, _, s1 = parse_lines(head)
    b, _, s2 = parse_lines(tail)
    return a + b, s1 + s2, False


def step_rewards(batches: Iterable[Iterable[dict[str, Any]]]) -> list[float | None]:
    """Every step's mean reward, as RunState folds it (a resumed run's redone steps replace the first try),
    without the other series: a run list reads a long log for it, one chunk at a time."""
    steps: list[int] = []
    rewards: list[float | None] = []
    for batch in batches:
        for ev in batch:
            step = ev.get("step")
            if ev.get("type") != "step" or not isinstance(step, int):
                continue
            if steps and step <= steps[-1]:
                cut = bisect.bisect_left(steps, step)
                del steps[cut:], rewards[cut:]
            metrics = ev.get("metrics")
            steps.append(step)
            rewards.append(_num(metrics.get(REWARD)) if isinstance(metrics, dict) else None)
    return rewards


def fold_run(path: Path, reward_trend: bool = True) -> RunState:
    """A run directory as a run list shows it: config.json, then the head and the tail of its event log
    (of its step events only the last, so `steps` and the series hold that one step), and, with reward_trend,
    the windowed means of every step's reward (`reward_trend`, the means `compare` and the run summary quote:
    a long log is read to its end for them, one chunk at a time).

    `path`, `config` and `notes` (what could not be read) are set; `engine_gone` too when the log
    says the engine is active but no engine process lives. `started` falls back on config.json's mtime.
    """
    run = RunDir(Path(path))
    s = RunState(path=Path(path))
    try:
        cfg = json.loads(run.config.read_text(encoding="utf-8"))
        s.config = cfg if isinstance(cfg, dict) else None
        if s.config is None:
            s.notes.append("config.json is not an object")
        s.started = run.config.stat().st_mtime
    except FileNotFoundError:
        s.notes.append("no config.json")
    except (OSError, ValueError) as e:
        s.notes.append(f"config.json unreadable ({type(e).__name__})")
    if not run.events.exists():
        s.notes.append("no events.jsonl")
        s.state = "no events" if not run.rollouts.exists() else "?"
        return s
    events, skipped, whole = _head_and_tail(run.events)
    if skipped:
        s.notes.append(f"{skipped} damaged event line(s) skipped")
    # A list shows the latest step, not the curves: fold only the last step event (the dearest to fold).
    last = next((i for i in range(len(events) - 1, -1, -1) if events[i].get("type") == "step"), -1)
    fallback_started, s.started = s.started, None
    s.apply(ev for i, ev in enumerate(events) if i == last or ev.get("type") != "step")
    s.started = s.started if s.started is not None else fallback_started
    # a long log is read to its end for the rewards in chunks of the tail's size: memory stays as bounded
    try:
        if reward_trend:
            s.reward_trend = trend(step_rewards([events] if whole else iter_events(run.events, TAIL_BYTES)))
    except OSError as e:
        s.notes.append(f"events.jsonl unreadable past its tail ({type(e).__name__})")
    if s.newer_schema:
        s.notes.append(
            f"{s.newer_schema} event(s) from a newer schema (v{s.newest_schema}): read the fields this knows"
        )
    if s.active and run.engine_pid() is None:
        s.engine_gone = True  # active by its log, but no engine process: killed or crashed
    return s


def failure_summary(s: RunState, run_dir: Path) -> str:
    """Why the run failed, from its last error event: the cause (it names the path), where the traceback is,
    and how to go on, as lines of plain text (run text: show it as text). Every UI shows this first: the
    traceback stays in engine.log and the error event, as its last lines rarely name the cause."""
    last = s.errors[-1] if s.errors else {}
    message = str(last.get("message") or "the engine reported no error event; see its log")
    lines = [f"cause: {message}"]
    if last.get("traceback"):
        lines.append(f"traceback: in {RunDir(Path(run_dir)).engine_log} and in the error event of events.jsonl")
    fix = "free space on that device, then " if "no space left" in message else "fix the cause, then "
    if s.last_checkpoint:
        fix += f"continue from the last checkpoint: grpo-tui --resume --run-dir {run_dir}"
    else:
        fix += f"start again: grpo-tui --restart --run-dir {run_dir}"
    lines.append(f"fix: {fix}")
    return "\n".join(lines)


def fmt_duration(seconds: float | None) -> str:
    """12s, 4m05s, 2h07m; "-" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(max(0.0, float(seconds))))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
