"""`grpo-tui compare RUN RUN...`: several runs side by side (the data, and the rich tables of `--no-ui`).

Each run's curves come from its events.jsonl (one value per step; a resumed run's
redone steps replace the first try) and its settings from config.json. The
Textual screen (tui/compare_screen.py) draws the same series as overlaid plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grpo_tui.rundir.event_reader import EventTail
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.state import CORRECT, MEAN_LENGTH, REWARD, RunState
from grpo_tui.rundir.summary_stats import trend
from grpo_tui.tui.fmt import editable, fixed, is_real
from grpo_tui.tui.text import safe_text, visible

# (key, label, how to read it from a step event)
SERIES: tuple[tuple[str, str], ...] = (
    ("reward", "reward"),
    ("correct", "correct"),
    ("length", "length"),
    ("kl", "KL"),
)
SAMPLE_ROWS = 10  # steps shown in the --no-ui by-step table


# compare's series name -> the fold's column (rundir.state.RunState)
COLUMNS = {"reward": REWARD, "correct": CORRECT, "length": MEAN_LENGTH, "kl": "kl"}


@dataclass
class RunCurves:
    """One run as `compare` sees it: its name, settings and one value per step of each series."""

    path: Path
    config: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    state: str = "?"
    knob_changes: list[dict[str, Any]] = field(default_factory=list)  # `knobs` events: config.json holds the last

    @property
    def name(self) -> str:
        return self.path.name

    def last(self, key: str) -> float | None:
        return next((v for v in reversed(self.series.get(key, [])) if v is not None), None)

    def first(self, key: str) -> float | None:
        return next((v for v in self.series.get(key, []) if v is not None), None)

    def at(self, key: str, step: int) -> float | None:
        try:
            return self.series[key][self.steps.index(step)]
        except (KeyError, ValueError):
            return None


def load_run(path: Path) -> RunCurves:
    """Read one run directory. Raises ValueError naming the path when it is not one."""
    run = RunDir(Path(path))
    if not run.events.exists():
        raise ValueError(f"{path} is not a run directory (no events.jsonl)")
    try:
        config = json.loads(run.config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{run.config}: unreadable ({type(e).__name__}: {e})") from None
    fold = RunState()
    tail = EventTail(run.events)
    try:
        for batch in tail.read_all():  # the one fold: a resumed run's redone steps replace the first try
            fold.apply(batch)
    except OSError as e:
        raise ValueError(f"{run.events}: unreadable ({e.strerror or e})") from None
    if fold.run_starts == 0 and not fold.steps and run.events.stat().st_size > 0:
        raise ValueError(
            f"{run.events}: not an event log ({tail.skipped} line(s), none of them a grpo-tui event); "
            "is this a run directory?"
        )
    steps = list(fold.steps)
    series = {key: list(fold.column(COLUMNS[key])) or [None] * len(steps) for key, _ in SERIES}
    state = fold.status + (f" ({tail.skipped} damaged line(s) skipped)" if tail.skipped else "")
    return RunCurves(
        Path(path), config if isinstance(config, dict) else {}, steps, series, state, list(fold.knob_changes)
    )


def load_runs(paths: list[Path]) -> tuple[list[RunCurves], list[str]]:
    """(runs, problems): every path that can't be read is a problem, named."""
    runs, problems = [], []
    for p in paths:
        try:
            runs.append(load_run(p))
        except ValueError as e:
            problems.append(visible(str(e)))  # it names the run's path: shown, its control characters visible
    if not problems and len(runs) < 2:
        problems.append("compare needs at least two run directories")
    return runs, problems


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(runs: list[RunCurves]) -> list[tuple[str, list[str]]]:
    """(section.key, the value in each run) for every setting that is not the same in all runs."""
    flat = [_flatten(r.config) for r in runs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    out = []
    for k in keys:
        values = [json.dumps(f[k], ensure_ascii=False) + live_note(r, k) if k in f else "—" for f, r in zip(flat, runs)]
        if len(set(values)) > 1:
            out.append((k, [v if len(v) <= 60 else v[:59] + "…" for v in values]))
    return out


def live_note(run: RunCurves, key: str) -> str:
    """' (live from step N; was X)' for a setting a `set` command changed during the run: config.json holds the
    value in force at the end, not the one the run started with."""
    section, _, name = key.partition(".")
    name = name.removesuffix(".weight")
    notes = []
    for ev in run.knob_changes:
        values, previous = ev.get("values") or {}, ev.get("previous") or {}
        if section == "train" and name in values:
            was = previous.get(name)
        elif section == "rewards" and name in (values.get("reward_weights") or {}):
            was = (previous.get("reward_weights") or {}).get(name)
        else:
            continue
        was_text = f", was {editable(was)}" if is_real(was) else ""
        notes.append(f"step {int(ev.get('step') or 0) + 1}{was_text}")
    return f" (live from {'; '.join(notes)})" if notes else ""


def sample_steps(runs: list[RunCurves], rows: int = SAMPLE_ROWS) -> list[int]:
    """Up to `rows` steps spread over the longest run, its last step included."""
    steps = sorted({s for r in runs for s in r.steps})
    if len(steps) <= rows:
        return steps
    picked = {steps[round(i * (len(steps) - 1) / (rows - 1))] for i in range(rows)}
    return sorted(picked)


def print_comparison(runs: list[RunCurves], console: Console | None = None) -> None:
    """The --no-ui comparison: settings that differ, each run's first and last values, a by-step table."""
    console = console or Console()
    diff = Table(title="Settings that differ (config.json)", title_style="bold", header_style="bold")
    diff.add_column("setting")
    for r in runs:
        diff.add_column(safe_text(r.name))
    for key, values in config_differences(runs):
        diff.add_row(safe_text(key), *(safe_text(v) for v in values))
    if not diff.rows:
        diff.add_row(Text("(the runs have the same settings)", style="dim"), *([""] * len(runs)))
    console.print(diff)

    summary = Table(
        title="Each run: mean of its first fifth of steps → its last fifth (as in its summary)",
        title_style="bold",
        header_style="bold",
    )
    summary.add_column("run", no_wrap=True, min_width=8, overflow="ellipsis")
    summary.add_column("state", no_wrap=True)
    summary.add_column("steps", justify="right", no_wrap=True)
    for _, label in SERIES:
        summary.add_column(label, justify="right", no_wrap=True)
    for r in runs:
        cells = []
        for key, _ in SERIES:
            digits = {"length": 0, "correct": 2}.get(key, 3)
            w = trend(r.series.get(key, []))
            cells.append(Text("-", style="dim") if w is None else Text(f"{w.first:.{digits}f}→{w.last:.{digits}f}"))
        summary.add_row(safe_text(r.name), safe_text(r.state), str(r.steps[-1] if r.steps else 0), *cells)
    console.print(summary)

    by_step = Table(title="Reward and correct by step (reward / correct)", title_style="bold", header_style="bold")
    by_step.add_column("step", justify="right")
    for r in runs:
        by_step.add_column(safe_text(r.name), justify="right")
    for step in sample_steps(runs):
        cells = []
        for r in runs:
            rew, cor = r.at("reward", step), r.at("correct", step)
            cells.append(
                Text("-", style="dim") if rew is None and cor is None else Text(f"{fixed(rew, 3)} / {fixed(cor, 2)}")
            )
        by_step.add_row(str(step), *cells)
    console.print(by_step)
