"""`grpo-tui browse [RUN_DIR]`: browse, filter, search and export a run's saved rollouts.

Steps (with their summary) on the left, the groups of the selected step below
them; on the right the completions of the selected group (the dashboard's
GroupTable) and the full text of the selected completion (its CompletionView).
The filters above combine; `h` shows every group of the same prompt across the
run, `e` exports the filtered completions to JSONL.

The store is rundir.rollouts (no Textual there). Thread workers read files and
compute selections, then post messages; only the app's thread touches widgets.
A live run is polled: new steps appear as the engine writes them.

Modules: `messages` (posted by workers), `snapshot` (reading, no Textual),
`widgets` (RowList, FilterBar, cell formatting), `runs` (the run list's
summaries), `screens/` (run_list, rollouts, history, export), and this app.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from grpo_tui.rundir.layout import RunDir
from grpo_tui.tui.browser.screens.rollouts import POLL_S, RolloutScreen
from grpo_tui.tui.browser.screens.run_list import RunListScreen
from grpo_tui.tui.browser.snapshot import prefetch
from grpo_tui.tui.text import LiteralNotifications


class BrowserApp(LiteralNotifications, App[int]):
    CSS_PATH = "browser.tcss"
    TITLE = "grpo-tui browse"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (150, "-wide")]

    def __init__(self, run_dir: Path | None, runs_root: Path = Path("runs"), poll_s: float = POLL_S) -> None:
        super().__init__()
        self.run_dir, self.runs_root, self.poll_s = run_dir, Path(runs_root), poll_s
        self._prefetched = prefetch(Path(run_dir)) if run_dir is not None else None

    def on_mount(self) -> None:
        if self.run_dir is not None:
            self.push_screen(RolloutScreen(self.run_dir, poll_s=self.poll_s, prefetched=self._prefetched))
        else:
            self.push_screen(RunListScreen(self.runs_root))


def run_browser(run_dir: Path | None, runs_root: Path = Path("runs")) -> int:
    """`grpo-tui browse [RUN_DIR]`: 0 on a normal quit, 2 when RUN_DIR is not a run directory."""
    import sys

    if run_dir is not None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            print(f"error: {run_dir} is not a directory", file=sys.stderr)
            return 2
        if not RunDir(run_dir).has_records():
            print(
                f"error: {run_dir} is not a run directory (no rollouts.jsonl, events.jsonl or config.json)",
                file=sys.stderr,
            )
            return 2
    app = BrowserApp(run_dir, runs_root)
    result = app.run()
    if app.return_code:  # it crashed (Textual printed the traceback): never report success
        return app.return_code
    return int(result or 0)
