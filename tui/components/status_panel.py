"""Engine state, progress, speed, preset and run directory, from the event log."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import Static

from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.events import Command, State
from grpo_tui.rundir.phases import breakdown_text
from grpo_tui.rundir.state import RunState, fmt_duration
from grpo_tui.tui.fmt import param_count
from grpo_tui.tui.text import safe_text

STATE_STYLE = {
    "starting": "bold cyan",
    "loading_model": "bold cyan",
    "running": "bold green",
    "pausing": "bold black on yellow",
    "paused": "bold yellow",
    "checkpointing": "bold cyan",
    "stopping": "bold yellow",
    "finished": "bold blue",
    "failed": "bold white on red",
    "gone": "bold white on red",
}
LABEL_WIDTH = 11
STATE_LABEL = {"loading_model": "loading model", "pausing": "pausing at step end"}


@dataclass
class EngineLink:
    """What the app knows about the engine process beyond the events."""

    run_dir: str
    preset_reason: str | None = None
    alive: bool = False
    pid: int | None = None
    gone: bool = False  # the log says active but the process is gone (killed, crashed)
    exit_code: int | None = None
    preset: str | None = None  # the --preset asked for: shown until the engine's run_start names it


def _bar(frac: float, width: int = 14) -> Text:
    frac = max(0.0, min(1.0, frac))
    full = int(round(frac * width))
    return Text("█" * full, style="green") + Text("░" * (width - full), style="dim")


def _int(x: Any) -> str:
    return f"{int(x):,}" if isinstance(x, (int, float)) else "?"


class _Rows:
    """Label/value lines, one terminal line each (cropped, never wrapped), so the panel's
    height only changes when a row appears or goes, and most updates need no relayout."""

    def __init__(self) -> None:
        self.lines: list[Text] = []

    def add_row(self, label: str, value: Text) -> None:
        line = Text(f"{label:<{LABEL_WIDTH}}", style="dim", no_wrap=True, overflow="ellipsis")
        line.append_text(value)
        line = safe_text(line)  # run data (preset, paths, details) shown literally
        line.no_wrap, line.overflow = True, "ellipsis"
        self.lines.append(line)

    def text(self) -> Text:
        return Text("\n", no_wrap=True, overflow="ellipsis").join(self.lines)


class StatusPanel(Static):
    """The run at a glance: state (coloured by STATE_STYLE), engine process, step and ETA, where step time goes,
    preset and model, the last checkpoint, and the commands sent with the engine's answers."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._rows = -1
        self._last: tuple[RunState, EngineLink] | None = None
        self._wrap_width = 0
        self._saved_key: tuple | None = None
        self._saved_text = ""

    def _saved(self, path: Any, events: int) -> str:
        """'  N saved': the checkpoint directories beside the latest one (a step saved twice, or one the trainer's
        save_total_limit removed, is not counted as the checkpoint events would); looked up when a checkpoint
        event arrives, not on every repaint."""
        key = (str(path), events)
        if key != self._saved_key:
            self._saved_key = key
            try:
                folder = Path(str(path)).parent
                n = len(find_checkpoints(folder).usable) if path else 0
                self._saved_text = f"  {n} saved" if n else ""  # none left on disk: nothing to count
            except OSError:
                self._saved_text = ""
        return self._saved_text

    def on_resize(self) -> None:
        # The preset reason is wrapped to the panel's width, which is only known after layout:
        # redraw once it is (or changes), so the result doesn't depend on when the first update came.
        if self._last is not None and self.content_size.width != self._wrap_width:
            self.show(*self._last)

    def show(self, m: RunState, link: EngineLink) -> None:
        self._last = (m, link)
        t = _Rows()
        state = "gone" if link.gone else m.state
        label = Text(STATE_LABEL.get(state, state), style=STATE_STYLE.get(state, "bold"))
        if link.gone:
            label = Text(f"engine gone (last state: {m.state})", style=STATE_STYLE["gone"])
        elif m.state_detail and m.state_detail != state:
            label.append(f" ({m.state_detail})", style="")
        # accepted ones show in the state, except a checkpoint: it is written when the step ends
        pending = [
            c
            for c in m.pending_commands()
            if c.status == "sent"
            or (c.command in (Command.CHECKPOINT, Command.SWITCH_PRESET) and m.state != State.CHECKPOINTING)
        ]
        if pending and not link.gone:
            label.append("  " + ", ".join(f"{c.command}: {c.status}" for c in pending[-2:]), style="yellow")
        t.add_row("State", label)

        rs = m.run_start or {}
        if link.alive and link.pid:
            engine = Text(f"pid {link.pid}", style="green")
        elif link.exit_code is not None and link.exit_code < 0:
            engine = Text(f"killed by signal {-link.exit_code}", style="red")
        elif link.exit_code is not None:
            engine = Text(f"exited with code {link.exit_code}", style="red" if link.exit_code else "dim")
        else:
            engine = Text("not running", style="dim")
        if rs.get("device"):
            engine.append(f"  on {rs['device']}", style="dim")
        t.add_row("Engine", engine)

        total = m.max_steps
        last = m.last_step or {}
        step = Text(f"{m.step}" + (f" / {total}" if total else ""), style="bold")
        if total:
            step.append("  ")
            step.append_text(_bar(m.step / total, 10))
            step.append(f" {100 * m.step / total:.0f}%")
        live = link.alive and not link.gone
        now = time.time() if live else None  # ticks between steps while the engine lives
        elapsed = m.elapsed(now)
        if elapsed is not None:
            step.append(f"  {fmt_duration(elapsed)}", style="dim")
        t.add_row("Step", step)
        tps = last.get("tokens_per_s")
        st = last.get("step_time_s")
        speed = Text((f"{st:.2f}" if st < 10 else f"{st:.0f}") + " s/step" if st else "- s/step")
        speed.append(
            f"  {tps:,.0f} tok/s total" if isinstance(tps, (int, float)) else "  - tok/s total"
        )  # prompt + completion
        speed.append(f"  ETA {fmt_duration(m.eta(now) if live else None)}")
        t.add_row("Speed", speed)
        if isinstance(last.get("phase_s"), dict):  # where the last step's seconds went
            phases = Text(breakdown_text(last["phase_s"], top=3) or "-")
            gen = last.get("generation_tokens_per_s")
            if isinstance(gen, (int, float)):
                phases.append(f"  gen {gen:,.0f} tok/s", style="dim")
                bound = last.get("generation_bound_tokens_per_s")
                if isinstance(bound, (int, float)) and bound > 0:  # the share of what memory bandwidth allows
                    phases.append(f" ({100 * gen / bound:.1f}% of bound)", style="dim")
            t.add_row("Step time", phases)
        preset = Text(m.preset if m.preset != "?" or not link.preset else link.preset, style="bold")
        if m.run_starts > 1:
            preset.append(f"  (engine start {m.run_starts})", style="dim")
        t.add_row("Preset", preset)
        if link.preset_reason and m.run_starts <= 1:  # why the first preset was picked, on at most two lines
            self._wrap_width = self.content_size.width
            width = self.content_size.width - LABEL_WIDTH if self.content_size.width > LABEL_WIDTH + 10 else 35
            for line in textwrap.wrap(link.preset_reason, width)[:2]:
                t.add_row("", Text(line, style="dim"))
        model = m.model_info or {}
        if rs or model:
            t.add_row("Model", Text(str(model.get("name") or rs.get("model") or "?")))
            ptext = Text(param_count(model["parameters"]) if model.get("parameters") else "?")
            if model.get("trainable") and model["trainable"] != model.get("parameters"):
                ptext.append(f", {param_count(model['trainable'])} trainable")
            elif model.get("trainable"):
                ptext.append(", all trainable")
            t.add_row("Params", ptext)
        if m.dataset:
            t.add_row(
                "Data",
                Text(
                    f"{m.dataset.get('source')}  {_int(m.dataset.get('rows_used'))} rows"
                    f"  G={rs.get('num_generations', '?')}"
                ),
            )
        t.add_row("Run", Text(link.run_dir))
        if m.last_checkpoint:
            ck = m.last_checkpoint
            t.add_row(
                "Checkpoint",
                Text(f"step {ck.get('step')} ({ck.get('reason')})" + self._saved(ck.get("path"), m.checkpoints)),
            )
        if m.last_command:
            c = m.last_command
            style = {"rejected": "bold red", "done": "green", "accepted": "yellow", "sent": "yellow"}.get(c.status, "")
            cmd = Text(f"{c.command}: ") + Text(c.status, style=style)
            if c.detail:
                cmd.append(f"  {c.detail}", style="dim")
            t.add_row("Command", cmd)
        if m.reward_failures:
            f = m.reward_failures[-1]
            t.add_row(
                "Reward err",
                Text(f"{f.get('reward')}: {f.get('kind')} x{f.get('count')} (step {f.get('step')})", style="yellow"),
            )
        self.update(t.text(), layout=len(t.lines) != self._rows)
        self._rows = len(t.lines)
