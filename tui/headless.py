"""`grpo-tui --no-ui`: the same detached engine, watched with rich instead of Textual.

Prints one line per step (so logs and CI output stay readable) under a live
status panel when the terminal is interactive. Ctrl-C sends the engine a stop
command: it finishes the step and writes a checkpoint. A second Ctrl-C
detaches and leaves the engine to finish stopping on its own.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rundir.control import send_command
from rundir.events import EventTail
from rundir.layout import RunDir
from rundir.state import RunSummary, fmt_duration, mean_and_stderr
from tui.launcher import EngineProcess, launch_engine


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def memory_text(mem: dict[str, Any]) -> str:
    if not mem:
        return "-"
    if mem.get("allocated_gb") is not None:
        return (f"GPU {mem['allocated_gb']:.1f} alloc / {mem['reserved_gb']:.1f} resv / "
                f"{mem['peak_gb']:.1f} peak of {mem['total_gb']:.0f} GB")
    return f"RSS {mem.get('rss_gb', 0):.2f} GB (no GPU)"


def step_line(ev: dict[str, Any], names: list[str]) -> str:
    m = ev.get("metrics") or {}
    parts = [f"step {ev['step']}/{ev.get('max_steps', '?')}",
             f"reward {_f(m.get('reward'))}"]
    parts += [f"{n} {_f(m.get(f'rewards/{n}/mean'), 2)}" for n in names]
    parts += [f"zero-std {_f(m.get('frac_reward_zero_std'), 2)}",
              f"correct {_f(ev.get('correct_frac'), 2)}",
              f"len {_f(m.get('completions/mean_length'), 0)}",
              f"trunc {_f(m.get('completions/clipped_ratio'), 2)}"]
    parts += policy_parts(m)
    parts += [
              f"{_f(ev.get('step_time_s'), 1)}s/step",
              f"ETA {fmt_duration(ev.get('eta_s'))}"]
    return " | ".join(parts)


def _g(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def policy_parts(m: dict[str, Any]) -> list[str]:
    """KL (logged only when beta > 0), entropy and grad norm of a step's metrics (issue 16)."""
    out = [f"kl {_g(m.get('kl'))}"] if "kl" in m else []
    return out + [f"entropy {_g(m.get('entropy'))}", f"gnorm {_g(m.get('grad_norm'))}"]


def health_line(ev: dict[str, Any]) -> Text:
    """A `health` event as one line (run text: never markup)."""
    if ev.get("status") == "warn":
        return Text(f"warning at step {ev.get('step')}: {ev.get('rule')}: {ev.get('diagnosis')}; "
                    f"fix: {ev.get('fix')}", style="yellow")
    return Text(f"ok at step {ev.get('step')}: {ev.get('rule')} no longer fires", style="dim")


def status_panel(s: RunSummary, run_dir: Path, note: str) -> Panel:
    ev, m = s.last_step, s.metrics
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan")
    t.add_column()
    t.add_row("state", f"{s.state}{' (' + s.detail + ')' if s.detail else ''}")
    t.add_row("step", f"{s.step}/{s.max_steps}  ETA {fmt_duration(ev.get('eta_s'))}  "
                      f"{_f(ev.get('step_time_s'), 1)} s/step  {_f(ev.get('tokens_per_s'), 0)} tok/s")
    rewards = "  ".join(f"{n} {_f(m.get(f'rewards/{n}/mean'), 2)}" for n in s.reward_names)
    t.add_row("reward", f"{_f(m.get('reward'))}   {rewards}")
    t.add_row("groups", f"zero-std {_f(m.get('frac_reward_zero_std'), 2)}  correct {_f(ev.get('correct_frac'), 2)}  "
                        f"len {_f(m.get('completions/mean_length'), 0)}  truncated {_f(m.get('completions/clipped_ratio'), 2)}")
    t.add_row("policy", "  ".join(policy_parts(m)))
    for rule, h in s.health.items():
        t.add_row("health", Text(f"{rule}: {h.get('diagnosis')}", style="yellow"))
    t.add_row("memory", memory_text(s.last_memory))
    t.add_row("run", f"{s.preset} ({s.model})  {run_dir}")
    if note:
        t.add_row("", Text(note, style="yellow"))
    return Panel(t, title="grpo-tui --no-ui", border_style="cyan")


def print_summary(console: Console, s: RunSummary, run_dir: Path, code: int | None) -> None:
    t = Table(title="Run summary", show_header=False, title_style="bold")
    t.add_column(style="bold")
    t.add_column()
    end = s.end or {}
    t.add_row("status", f"{end.get('status', s.state)}  (engine exit code {code})")
    t.add_row("steps", f"{s.step}/{s.max_steps}  in {fmt_duration(end.get('elapsed_s'))}")
    if s.rewards:
        k = max(1, len(s.rewards) // 5)
        first, fe = mean_and_stderr(s.rewards[:k])
        last, le = mean_and_stderr(s.rewards[-k:])
        t.add_row("mean reward", f"first {k} steps {first:.3f} ± {fe:.3f}  ->  last {k} steps {last:.3f} ± {le:.3f}")
    if s.zero_std:
        line = f"{sum(s.zero_std) / len(s.zero_std):.2f} on average"
        if s.zero_std_before:  # dynamic sampling: as sampled vs as trained
            line = (f"{sum(s.zero_std_before) / len(s.zero_std_before):.2f} as sampled -> {line} as trained "
                    "(dynamic sampling)")
        t.add_row("zero-std groups", line)
    if s.correct:
        t.add_row("correct", f"{s.correct[-1]:.2f} at the last step")
    if s.policy:
        t.add_row("policy", policy_summary(s.policy))
    for rule, h in s.health_fired.items():
        still = " (still firing)" if rule in s.health else ""
        t.add_row("health", Text(f"{rule} from step {h.get('step')}{still}: {h.get('diagnosis')}; fix: {h.get('fix')}",
                                 style="yellow"))
    for k in s.knobs:
        t.add_row("live knobs", Text(f"after step {k.get('step')}: " + ", ".join(
            f"{n} {v}" for n, v in (k.get("values") or {}).items())))  # reward names come from the run: no markup
    if s.dataset:
        t.add_row("data", f"{s.dataset.get('rows_used')} rows used, {s.dataset.get('rows_skipped')} skipped "
                          f"{s.dataset.get('skipped') or ''}")
    if s.reward_failures:
        t.add_row("reward failures", ", ".join(f"{k}: {v}" for k, v in s.reward_failures.items()))
    if s.evals:
        first, last = s.evals[0], s.evals[-1]
        t.add_row("eval (strict)", f"step {first.get('step')}: {_f(first.get('accuracy'), 3)}  ->  "
                                   f"step {last.get('step')}: {_f(last.get('accuracy'), 3)} "
                                   f"[{_f(last.get('ci_low'), 3)}, {_f(last.get('ci_high'), 3)}]")
    if s.checkpoints:
        t.add_row("last checkpoint", s.checkpoints[-1]["path"])
    t.add_row("run directory", str(run_dir))
    console.print(t)
    if s.errors:
        tb = s.errors[-1].get("traceback") or s.errors[-1].get("message", "")
        console.print(Panel("\n".join(tb.strip().splitlines()[-15:]), title="engine error", border_style="red"))


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


def follow(run_dir: Path, engine: EngineProcess | None, console: Console | None = None,
           poll_s: float = 0.25) -> int:
    """Print the run until its engine exits; returns the engine's exit code (or 0/1 from run_end when attached)."""
    console = console or Console()
    run = RunDir(Path(run_dir))
    tail = EventTail(run.events)
    s = RunSummary()
    note = ""
    stop_sent = [0]

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal note
        stop_sent[0] += 1
        if stop_sent[0] == 1:
            send_command(run.control, "stop")
            note = "stopping: finishing the step and writing a checkpoint (Ctrl-C again to detach)"
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_sigint)
    live = Live(status_panel(s, run.root, note), console=console, refresh_per_second=4,
                transient=True) if console.is_terminal else None
    code: int | None = None
    try:
        if live:
            live.start()
        while True:
            for ev in tail.read_new():
                s.add(ev)
                if ev["type"] == "step":
                    console.print(step_line(ev, s.reward_names))
                elif ev["type"] in ("checkpoint", "reward_failure", "dataset", "model", "eval", "sft_step", "stage",
                                    "curriculum") or (ev["type"] == "command" and ev.get("status") == "rejected"):
                    console.print(_event_line(ev), style="dim")
                elif ev["type"] == "health":
                    console.print(health_line(ev))
                elif ev["type"] == "command" and ev.get("command") == "set" and ev.get("status") == "done":
                    console.print(Text(f"live knobs: {ev.get('detail')}", style="cyan"))
                elif ev["type"] == "state" and ev["state"] in ("paused", "stopping", "failed"):
                    console.print(f"[{ev['state']}] {ev.get('detail', '')}", style="yellow")
            if live:
                live.update(status_panel(s, run.root, note))
            if engine is not None:
                code = engine.poll()
                if code is not None:
                    for ev in tail.read_new():
                        s.add(ev)
                        if ev["type"] == "step":
                            console.print(step_line(ev, s.reward_names))
                    break
            elif s.end is not None or run.engine_pid() is None:
                s.extend(tail.read_new())
                code = (s.end or {}).get("exit_code", 0 if s.state == "finished" else 1)
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        if live:
            live.stop()
            live = None
        console.print(f"detached; the engine is still stopping. Watch it with: grpo-tui attach {run.root}")
        return 130
    finally:
        if live:
            live.stop()
        signal.signal(signal.SIGINT, old)
    if tail.skipped:
        console.print(f"note: {tail.skipped} unreadable event line(s) skipped", style="yellow")
    print_summary(console, s, run.root, code)
    return code if code is not None else 1


def _event_line(ev: dict[str, Any]) -> str:
    typ = ev["type"]
    if typ == "checkpoint":
        return f"checkpoint ({ev.get('reason')}) at step {ev.get('step')}: {ev.get('path')}"
    if typ == "reward_failure":
        return f"reward '{ev.get('reward')}' failed on {ev.get('count')} completion(s) ({ev.get('kind')}): {ev.get('example')}"
    if typ == "dataset":
        return (f"data: {ev.get('rows_used')} rows from {ev.get('origin')}, {ev.get('rows_skipped')} skipped "
                f"{ev.get('skipped') or ''}")
    if typ == "model":
        return f"model: {ev.get('name')} ({ev.get('parameters', 0) / 1e6:.1f}M params, {ev.get('trainable', 0) / 1e6:.2f}M trainable)"
    if typ == "eval":
        return (f"eval at step {ev.get('step')}: {ev.get('dataset')} n={ev.get('n')} strict {_f(ev.get('accuracy'), 3)} "
                f"[{_f(ev.get('ci_low'), 3)}, {_f(ev.get('ci_high'), 3)}] flexible {_f(ev.get('accuracy_flex'), 3)} "
                f"format {_f(ev.get('format_rate'), 2)}")
    if typ == "sft_step":
        return (f"sft step {ev.get('step')}/{ev.get('max_steps')} loss {_f(ev.get('loss'), 4)} "
                f"token acc {_f(ev.get('mean_token_accuracy'), 3)} lr {ev.get('learning_rate')} "
                f"ETA {fmt_duration(ev.get('eta_s'))}")
    if typ == "stage":
        extra = {k: ev[k] for k in ("examples", "steps", "train_loss", "kept", "problems", "rows") if k in ev}
        return f"stage {ev.get('stage')} {ev.get('status')} {extra or ''}"
    if typ == "curriculum":
        return (f"curriculum: kept {ev.get('kept')}/{ev.get('problems')} problems in pass-rate band {ev.get('band')} "
                f"(all wrong {ev.get('all_wrong')}, all right {ev.get('all_right')})")
    return f"command {ev.get('command')} rejected: {ev.get('detail')}"


def run_headless(preset: str | None, run_dir: Path, max_steps: int | None = None,
                 overrides: list[str] = (), resume: bool = False) -> int:
    console = Console()
    engine = launch_engine(preset, run_dir, max_steps, overrides, resume)
    console.print(f"engine pid {engine.pid}, run directory {run_dir}")
    if not engine.wait_started():
        code = engine.wait()
        sys.stderr.write(engine.preflight_output())
        return code if code else 1
    return follow(run_dir, engine, console)
