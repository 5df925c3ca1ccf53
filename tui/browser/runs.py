"""The runs under runs/, for the browser's run picker (no Textual here).

Each run is folded by rundir.state.fold_run (config.json, then the head and the
tail of a long event log), so listing many long runs stays quick; only the step
rewards are read from the whole log, one chunk at a time, for the windowed means.
"""

from __future__ import annotations

import time
from pathlib import Path

from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.state import RunState, fold_run


def run_date(run: RunState) -> str:
    """When the run started (its first run_start, else config.json's mtime)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else "?"


def _is_run(p: Path) -> bool:
    return RunDir(p).has_records()


def list_runs(runs_root: Path) -> list[RunState]:
    """Run directories directly under runs_root (those with events, config or rollouts), newest first."""
    try:
        dirs = [p for p in Path(runs_root).iterdir() if p.is_dir()]
    except OSError:
        return []
    runs = [fold_run(p) for p in dirs if _is_run(p)]
    return sorted(runs, key=lambda r: (r.started or 0.0, r.path.name), reverse=True)
