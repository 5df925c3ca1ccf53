"""`grpo-tui compare RUN RUN...`: several runs side by side (the data, and the rich tables of `--no-ui`).

Each run's curves come from its events.jsonl (one value per step; a resumed run's
redone steps replace the first try) and its settings from config.json. The
Textual screen (tui/compare.py) draws the same series as overlaid plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grpo_tui.rundir.events import read_events
from grpo_tui.rundir.state import CORRECT, MEAN_LENGTH, REWARD, RunState
from grpo_tui.rundir.layout import RunDir
from grpo_tui.tui.text import safe_text

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
    fold.apply(read_events(run.events))  # the one fold: a resumed run's redone steps replace the first try
    steps = list(fold.steps)
    series = {key: list(fold.column(COLUMNS[key])) or [None] * len(steps) for key, _ in SERIES}
    state = fold.status
    return RunCurves(Path(path), config if isinstance(config, dict) else {}, steps, series, state)


def load_runs(paths: list[Path]) -> tuple[list[RunCurves], list[str]]:
    """(runs, problems): every path that can't be read is a problem, named."""
    runs, problems = [], []
    for p in paths:
        try:
            runs.append(load_run(p))
        except ValueError as e:
            problems.append(str(e))
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
        values = [json.dumps(f[k], ensure_ascii=False) if k in f else "—" for f in flat]
        if len(set(values)) > 1:
            out.append((k, [v if len(v) <= 60 else v[:59] + "…" for v in values]))
    return out


def sample_steps(runs: list[RunCurves], rows: int = SAMPLE_ROWS) -> list[int]:
    """Up to `rows` steps spread over the longest run, its last step included."""
    steps = sorted({s for r in runs for s in r.steps})
    if len(steps) <= rows:
        return steps
    picked = {steps[round(i * (len(steps) - 1) / (rows - 1))] for i in range(rows)}
    return sorted(picked)


def _f(x: float | None, digits: int = 3) -> Text:
    return Text("-", style="dim") if x is None else Text(f"{x:.{digits}f}")


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

    summary = Table(title="Each run: first step → last step", title_style="bold", header_style="bold")
    summary.add_column("run", no_wrap=True, min_width=8, overflow="ellipsis")
    summary.add_column("state", no_wrap=True)
    summary.add_column("steps", justify="right", no_wrap=True)
    for _, label in SERIES:
        summary.add_column(label, justify="right", no_wrap=True)
    for r in runs:
        cells = []
        for key, _ in SERIES:
            digits = {"length": 0, "correct": 2}.get(key, 3)
            a, b = r.first(key), r.last(key)
            cells.append(Text("-", style="dim") if b is None else Text(f"{a:.{digits}f}→{b:.{digits}f}"))
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
            cells.append(Text("-", style="dim") if rew is None and cor is None else
                         Text(f"{'-' if rew is None else f'{rew:.3f}'} / {'-' if cor is None else f'{cor:.2f}'}"))
        by_step.add_row(str(step), *cells)
    console.print(by_step)
