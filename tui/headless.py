"""`grpo-tui --no-ui`: the same detached engine, watched with rich instead of Textual.

Prints one line per step (so logs and CI output stay readable) under a live
status panel when the terminal is interactive.

Signals, when this printer started the run: Ctrl-C (SIGINT), SIGTERM and
SIGHUP send the engine a stop command (it finishes the step and writes a
checkpoint) and say so; a second Ctrl-C or SIGTERM detaches and leaves the
engine to finish stopping on its own. Attached to a run someone started
(`grpo-tui attach --no-ui`), any of them only detaches: training goes on, and
the printer says how to stop it.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.event_reader import EventTail, iter_events
from grpo_tui.rundir.events import State
from grpo_tui.rundir.health import latest_findings
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.phases import breakdown_text, dominant, remedy
from grpo_tui.rundir.state import CORRECT, REWARD, ZERO_STD, ZERO_STD_BEFORE, RunState, failure_summary, fmt_duration
from grpo_tui.rundir.summary_stats import trend
from grpo_tui.tui.fmt import param_count, significant, value
from grpo_tui.tui.launcher import EngineProcess, launch_engine
from grpo_tui.tui.text import safe_text

_WATCH_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def memory_text(mem: dict[str, Any]) -> str:
    if not mem:
        return "-"
    if mem.get("allocated_gb") is not None:
        return (
            f"GPU {mem['allocated_gb']:.1f} alloc / {mem['reserved_gb']:.1f} resv / "
            f"{mem['peak_gb']:.1f} peak of {mem['total_gb']:.0f} GB"
        )
    return f"RSS {mem.get('rss_gb', 0):.2f} GB (no GPU)"


def step_line(ev: dict[str, Any], names: list[str]) -> str:
    m = ev.get("metrics") or {}
    parts = [f"step {ev['step']}/{ev.get('max_steps', '?')}", f"reward {value(m.get('reward'))}"]
    parts += [f"{n} {value(m.get(f'rewards/{n}/mean'), 2)}" for n in names]
    parts += [
        f"zero-std {value(m.get('frac_reward_zero_std'), 2)}",
        f"correct {value(ev.get('correct_frac'), 2)}",
        f"len {value(m.get('completions/mean_length'), 0)}",
        f"trunc {value(m.get('completions/clipped_ratio'), 2)}",
    ]
    parts += policy_parts(m)
    parts += [f"{value(ev.get('step_time_s'), 1)}s/step", f"ETA {fmt_duration(ev.get('eta_s'))}"]
    return " | ".join(parts)


def policy_parts(m: dict[str, Any]) -> list[str]:
    """KL (logged only when beta > 0), entropy and grad norm of a step's metrics."""
    out = [f"kl {significant(m.get('kl'))}"] if "kl" in m else []
    return out + [f"entropy {significant(m.get('entropy'))}", f"gnorm {significant(m.get('grad_norm'))}"]


def health_line(ev: dict[str, Any]) -> tuple[str, str]:
    """A `health` event as one line (text, style)."""
    if ev.get("status") == "warn":
        return (
            f"warning at step {ev.get('step')}: {ev.get('rule')}: {ev.get('diagnosis')}; fix: {ev.get('fix')}",
            "yellow",
        )
    return f"ok at step {ev.get('step')}: {ev.get('rule')} no longer fires", "dim"


class SafeTable(Table):
    """A rich Table whose str cells are shown as literal text (run data is never markup)."""

    def add_row(self, *cells: Any, **kw: Any) -> None:
        super().add_row(*(safe_text(c) if isinstance(c, str) else c for c in cells), **kw)


def status_panel(s: RunState, run_dir: Path, note: str, now: float | None = None) -> Panel:
    """The live panel; `now` while the engine lives, so elapsed time and ETA tick between steps."""
    ev, m = s.last_step or {}, s.metrics
    t = SafeTable.grid(padding=(0, 2))
    t.add_column(style="bold cyan")
    t.add_column()
    t.add_row("state", f"{s.state}{' (' + s.state_detail + ')' if s.state_detail else ''}")
    t.add_row(
        "step",
        f"{s.step}/{s.max_steps}  in {fmt_duration(s.elapsed(now))}  ETA {fmt_duration(s.eta(now))}  "
        f"{value(ev.get('step_time_s'), 1)} s/step  {value(ev.get('tokens_per_s'), 0)} tok/s total",
    )
    rewards = "  ".join(f"{n} {value(m.get(f'rewards/{n}/mean'), 2)}" for n in s.reward_names)
    t.add_row("reward", f"{value(m.get('reward'))}   {rewards}")
    t.add_row(
        "groups",
        f"zero-std {value(m.get('frac_reward_zero_std'), 2)}  correct {value(ev.get('correct_frac'), 2)}  "
        f"len {value(m.get('completions/mean_length'), 0)}  truncated {value(m.get('completions/clipped_ratio'), 2)}",
    )
    if isinstance(ev.get("phase_s"), dict):
        gen = ev.get("generation_tokens_per_s")
        t.add_row("step time", breakdown_text(ev["phase_s"]) + (f"   generation {gen:,.0f} tok/s" if gen else ""))
    t.add_row("policy", "  ".join(policy_parts(m)))
    for rule, h in s.health.items():
        t.add_row("health", safe_text(f"{rule}: {h.get('diagnosis')}", style="yellow"))
    t.add_row("memory", memory_text(s.last_memory))
    t.add_row("run", f"{s.preset} ({s.model_name})  {run_dir}")
    if note:
        t.add_row("", Text(note, style="yellow"))
    return Panel(t, title="grpo-tui --no-ui", border_style="cyan")


def _reward_trend(rewards: list[float]) -> str:
    """Mean reward over the first and the last fifth of the steps (one step each for short runs)."""
    if len(rewards) < 2:
        return f"{rewards[0]:.3f} (one step)"
    return trend(rewards).text()


def wrong_answer_line(run_dir: Path) -> str:
    """Wrong answers by kind over the run, and at the last step (from rollouts.jsonl)."""
    from collections import Counter

    from grpo_tui.engine.rewards.error_kinds import ERROR_KINDS, error_counts
    from grpo_tui.rundir.rollouts import read_rollouts

    per_step = error_counts(read_rollouts(run_dir)[0])
    if not per_step:
        return ""
    total = sum(per_step.values(), Counter())
    last_step = max(per_step)

    def fmt(c: Counter) -> str:
        return ", ".join(f"{ERROR_KINDS[k]} {c[k]}" for k in ERROR_KINDS if c[k]) or "none"

    return f"{fmt(total)}  (step {last_step}: {fmt(per_step[last_step])})"


def print_summary(console: Console, s: RunState, run_dir: Path, code: int | None) -> None:
    t = SafeTable(title="Run summary", show_header=False, title_style="bold")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("status", s.outcome(code) + (f"  (engine exit code {code})" if code is not None else ""))
    t.add_row(
        "steps",
        f"{s.step}/{s.max_steps}  in {fmt_duration(s.elapsed())}"
        + (f" over {s.run_starts} engine starts" if s.run_starts > 1 else ""),
    )
    rewards = s.values(REWARD)
    if rewards:
        t.add_row("mean reward", _reward_trend(rewards))
    zero_std, before = s.values(ZERO_STD), s.values(ZERO_STD_BEFORE)
    if zero_std:
        line = f"{sum(zero_std) / len(zero_std):.2f} on average"
        if before:  # dynamic sampling: as sampled vs as trained
            line = f"{sum(before) / len(before):.2f} as sampled -> {line} as trained (dynamic sampling)"
        t.add_row("zero-std groups", line)
    correct = s.values(CORRECT)
    if correct:
        t.add_row("correct", f"{correct[-1]:.2f} at the last step")
    if s.sft_stage:
        t.add_row("sft stage", f"{s.sft_status}" + (f", last loss {s.sft_losses[-1]:.4f}" if s.sft_losses else ""))
    top = dominant(s.phase_s)
    if top:
        name, share = top
        t.add_row("step time", breakdown_text(s.phase_s, top=6))
        config = s.config or (s.run_start or {}).get("config") or {}
        train = config.get("train") or {}
        t.add_row(
            "dominant phase", f"{name} ({100 * share:.0f}%): cut it with {remedy(name, train, config.get('model'))}"
        )
    if s.policy:
        t.add_row("policy", policy_summary(s.policy))
    # streamed: a long log is read in chunks, never whole into memory
    now = (
        latest_findings(ev for batch in iter_events(RunDir(Path(run_dir)).events) for ev in batch)
        if s.health_fired
        else {}
    )
    for rule, h in s.health_fired.items():
        still = " (still firing)" if rule in s.health else ""
        # a rule still firing is quoted as it reads at the end; one that cleared, as it read when it fired
        diagnosis = now[rule].diagnosis if rule in s.health and rule in now and now[rule].firing else h.get("diagnosis")
        t.add_row(
            "health",
            safe_text(f"{rule} from step {h.get('step')}{still}: {diagnosis}; fix: {h.get('fix')}", style="yellow"),
        )
    for k in s.knob_changes:
        t.add_row(
            "live knobs",
            f"after step {k.get('step')}: " + ", ".join(f"{n} {v}" for n, v in (k.get("values") or {}).items()),
        )  # SafeTable: reward names are run text
    if s.dataset:
        t.add_row(
            "data",
            f"{s.dataset.get('rows_used')} rows used, {s.dataset.get('rows_skipped')} skipped "
            f"{s.dataset.get('skipped') or ''}",
        )
    if s.reward_failure_counts:
        t.add_row("reward failures", ", ".join(f"{k}: {v}" for k, v in s.reward_failure_counts.items()))
    if s.evals:
        first, last = s.evals[0], s.evals[-1]
        t.add_row(
            "eval (strict)",
            f"step {first.get('step')}: {value(first.get('accuracy'), 3)}  ->  "
            f"step {last.get('step')}: {value(last.get('accuracy'), 3)} "
            f"[{value(last.get('ci_low'), 3)}, {value(last.get('ci_high'), 3)}]",
        )
    wrong = wrong_answer_line(run_dir)
    if wrong:
        t.add_row("wrong answers", wrong)
    if s.last_checkpoint:
        t.add_row("last checkpoint", str(s.last_checkpoint.get("path")))
    t.add_row("run directory", str(run_dir))
    console.print(t)
    if s.errors:
        console.print(Panel(safe_text(failure_summary(s, run_dir)), title="engine error", border_style="red"))


def how_to_stop(run_dir: Path) -> str:
    return f"Stop it with: grpo-tui stop {run_dir} (or grpo-tui attach {run_dir}, then s)."


class _Detach(Exception):
    """Raised from a signal handler: leave the engine running and stop watching."""


def policy_summary(policy: dict[str, list[float]]) -> str:
    parts = []
    if policy.get("entropy"):
        parts.append(f"entropy {policy['entropy'][0]:.3g} -> {policy['entropy'][-1]:.3g}")
    if policy.get("kl"):
        parts.append(f"kl last {policy['kl'][-1]:.3g}, max {max(policy['kl']):.3g}")
    if policy.get("grad_norm"):
        g = policy["grad_norm"]
        parts.append(f"grad norm mean {sum(g) / len(g):.3g}, max {max(g):.3g}")
    return "  ".join(parts)


def follow(run_dir: Path, engine: EngineProcess | None, console: Console | None = None, poll_s: float = 0.25) -> int:
    """Print the run until its engine exits; returns the engine's exit code (or 0/1 from run_end when attached).

    engine None means attached: a signal detaches (returns 0) and training goes on.
    """
    console = console or Console()
    run = RunDir(Path(run_dir))
    tail = EventTail(run.events)
    s = RunState()
    note = ""
    stop_sent: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal note
        if engine is None:
            raise _Detach(signal.Signals(signum).name)
        if stop_sent and signum != signal.SIGHUP:
            raise KeyboardInterrupt  # second Ctrl-C / SIGTERM: detach, the engine finishes stopping alone
        if not stop_sent:
            send_command(run.control, "stop")
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            note = f"{name}: asked the engine to stop (finishing the step, writing a checkpoint); again to detach"
            _say(console, note, style="yellow")
        stop_sent.append(signum)

    def read() -> None:
        for batch in tail.read_all():  # to the end of the log, one chunk at a time: a long run is read whole
            for ev in batch:
                s.add(ev)
                line = event_line(ev, s)
                if line is not None:
                    console.print(safe_text(line[0], style=line[1]))  # run text is data, never markup

    old = {sig: signal.signal(sig, on_signal) for sig in _WATCH_SIGNALS}
    live = (
        Live(status_panel(s, run.root, note), console=console, refresh_per_second=4, transient=True)
        if console.is_terminal
        else None
    )
    code: int | None = None  # the engine's exit code, when known
    try:
        if live:
            live.start()
        while True:
            read()
            if live:
                live.update(status_panel(s, run.root, note, time.time()))
            if engine is not None:
                code = engine.poll()
                if code is not None:
                    read()  # whatever it wrote before exiting
                    s.engine_gone = s.active
                    break
            elif s.run_end is not None or run.engine_pid() is None:
                read()
                if s.run_end is not None:
                    code = s.run_end.get("exit_code", 0 if s.state == State.FINISHED else 1)
                else:
                    s.engine_gone = s.active  # attached to a run whose engine died without a word
                break
            time.sleep(poll_s)
    except _Detach as e:
        if live:
            live.stop()
            live = None
        pid = run.engine_pid()
        _say(
            console, f"{e}: detached; training continues in the background (engine pid {pid}). {how_to_stop(run.root)}"
        )
        return 0
    except KeyboardInterrupt:
        if live:
            live.stop()
            live = None
        _say(console, f"detached; the engine is still stopping. Watch it with: grpo-tui attach {run.root}")
        return 130
    finally:
        if live:
            live.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if tail.skipped:
        console.print(f"note: {tail.skipped} unreadable event line(s) skipped", style="yellow")
    print_summary(console, s, run.root, code)
    if code is None:
        return 0 if s.state == State.FINISHED and not s.failed else 1
    return code


def event_line(ev: dict[str, Any], s: RunState) -> tuple[str, str] | None:
    """The line (text, style) printed for an event, live or attached alike; None for events not printed."""
    typ = ev.get("type")
    if typ == "step":
        return (step_line(ev, s.reward_names), "") if isinstance(ev.get("step"), int) else None
    if typ in ("checkpoint", "reward_failure", "dataset", "model", "eval", "sft_step", "stage", "curriculum"):
        return _event_line(ev), "dim"
    if typ == "health":
        return health_line(ev)
    if typ == "command" and ev.get("command") == "set" and ev.get("status") == "done":
        return f"live knobs: {ev.get('detail')}", "cyan"
    if typ == "command" and ev.get("status") in ("done", "rejected"):
        detail = f": {ev.get('detail')}" if ev.get("detail") else ""
        return f"command {ev.get('command')} {ev.get('status')}{detail}", (
            "yellow" if ev.get("status") == "rejected" else "cyan"
        )
    if typ == "error":
        return f"error: {ev.get('message')}", "red"
    if typ == "state" and ev.get("state") == State.FAILED:
        cause = ev.get("detail") or (s.errors[-1].get("message") if s.errors else "")
        return f"[failed] at step {ev.get('step', s.step)}" + (f": {cause}" if cause else ""), "red"
    if typ == "state" and ev.get("state") in (State.PAUSED, State.STOPPING):
        return f"[{ev.get('state')}] {ev.get('detail') or ''}", "yellow"
    if typ == "run_end" and ev.get("status") == "switched":
        return f"switching to preset {ev.get('next_preset')} after step {ev.get('step')}", "cyan"
    if typ == "run_start" and s.run_starts > 1:
        return (
            f"engine start {s.run_starts}: preset {ev.get('preset')}"
            + (f", resuming from {ev.get('resume_from')}" if ev.get("resume_from") else "")
        ), "cyan"
    return None


def _say(console: Console, text: str, style: str | None = None) -> None:
    # after SIGHUP the terminal may be gone: the message is a courtesy, never a crash
    try:
        console.print(safe_text(text, style=style or ""), soft_wrap=True)
    except OSError:
        pass


def _event_line(ev: dict[str, Any]) -> str:
    typ = ev["type"]
    if typ == "checkpoint":
        return f"checkpoint ({ev.get('reason')}) at step {ev.get('step')}: {ev.get('path')}"
    if typ == "reward_failure":
        return (
            f"reward '{ev.get('reward')}' failed on {ev.get('count')} completion(s) ({ev.get('kind')}): "
            f"{ev.get('example')}"
        )
    if typ == "dataset":
        return (
            f"data: {ev.get('rows_used')} rows from {ev.get('origin')}, {ev.get('rows_skipped')} skipped "
            f"{ev.get('skipped') or ''}"
        )
    if typ == "model":
        n, k = ev.get("parameters"), ev.get("trainable")
        return f"model: {ev.get('name')} ({param_count(n)} params, " + (
            "all trainable)" if k == n else f"{param_count(k)} trainable)"
        )
    if typ == "eval":
        return (
            f"eval at step {ev.get('step')}: {ev.get('dataset')} n={ev.get('n')} "
            f"strict {value(ev.get('accuracy'), 3)} [{value(ev.get('ci_low'), 3)}, {value(ev.get('ci_high'), 3)}] "
            f"flexible {value(ev.get('accuracy_flex'), 3)} format {value(ev.get('format_rate'), 2)}"
        )
    if typ == "sft_step":
        return (
            f"sft step {ev.get('step')}/{ev.get('max_steps')} loss {value(ev.get('loss'), 4)} "
            f"token acc {value(ev.get('mean_token_accuracy'), 3)} lr {ev.get('learning_rate')} "
            f"ETA {fmt_duration(ev.get('eta_s'))}"
        )
    if typ == "stage":
        extra = {k: ev[k] for k in ("examples", "steps", "train_loss", "kept", "problems", "rows") if k in ev}
        return f"stage {ev.get('stage')} {ev.get('status')} {extra or ''}"
    if typ == "curriculum":
        return (
            f"curriculum: kept {ev.get('kept')}/{ev.get('problems')} problems in pass-rate band {ev.get('band')} "
            f"(all wrong {ev.get('all_wrong')}, all right {ev.get('all_right')})"
        )
    raise ValueError(f"no line for a {typ!r} event")


def run_headless(
    preset: str | None,
    run_dir: Path,
    max_steps: int | None = None,
    overrides: list[str] = (),
    resume: bool = False,
    restart: bool = False,
) -> int:
    console = Console()
    engine = launch_engine(preset, run_dir, max_steps, overrides, resume, restart)
    console.print(safe_text(f"engine pid {engine.pid}, run directory {run_dir}"))
    if not engine.wait_started():
        code = engine.wait()
        sys.stderr.write(engine.preflight_output())
        return code if code else 1
    return follow(run_dir, engine, console)
