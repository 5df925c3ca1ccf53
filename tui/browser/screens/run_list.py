"""The run picker: `grpo-tui browse` without a RUN_DIR. Space marks runs, c compares the marked ones.

The reward column is the mean over the first fifth of the steps -> the mean over the last fifth (rundir.summary_stats),
the numbers `compare` and the run summary quote for the same run.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from grpo_tui.rundir.state import RunState
from grpo_tui.rundir.summary_stats import Trend
from grpo_tui.tui.browser.runs import list_runs, run_date
from grpo_tui.tui.browser.screens.rollouts import RolloutScreen
from grpo_tui.tui.browser.worker_messages import RunsListed
from grpo_tui.tui.text import safe_text

STEPS_WIDTH = 9  # the steps column's narrowest width
REWARD_WIDTH = 13  # first→last: two means of three decimals


def reward_cell(t: Trend | None) -> Text:
    """A run's windowed mean rewards, first→last, as compare's summary shows them ("-": no step yet)."""
    return Text("-", style="dim", justify="right") if t is None else Text(t.span(), justify="right")


class RunListScreen(Screen):
    BINDINGS = [
        Binding("q", "app.quit", "Quit"),
        Binding("r", "reload", "Reload"),
        Binding("enter", "open", "Open", show=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
    ]

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = Path(runs_root)
        self.runs: list[RunState] = []
        self.marked: set[Path] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(safe_text(f"Runs under {self.runs_root}/ (reading…)"), id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        self._add_columns(table, STEPS_WIDTH)
        table.focus()
        self.action_reload()

    @staticmethod
    def _add_columns(table: DataTable, steps_width: int) -> None:
        for label, width in (
            ("date", 18),
            ("run", 28),
            ("preset", 12),
            ("model", 24),
            ("steps", steps_width),
            ("reward", REWARD_WIDTH),
            ("state", 9),
            ("notes", 40),
        ):
            table.add_column(label, key=label, width=width)  # date: + the mark

    @work(thread=True, exclusive=True, group="runs")
    def action_reload(self) -> None:
        self.post_message(RunsListed(list_runs(self.runs_root)))

    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs", DataTable)
        steps = ["-" if not r.steps else f"{r.step}" + (f"/{r.max_steps}" if r.max_steps else "") for r in self.runs]
        table.clear(columns=True)  # the steps column as wide as its widest count: "20000/20000", never cut
        self._add_columns(table, max([STEPS_WIDTH, *map(len, steps)]))
        state_style = {
            "finished": "green",
            "running": "bold cyan",
            "failed": "red",
            "gone": "yellow",
            "stopped": "yellow",
            "paused": "cyan",
        }
        self.marked &= {r.path for r in self.runs}
        for i, r in enumerate(self.runs):
            table.add_row(
                self._mark(r),
                safe_text(r.path.name),
                safe_text(r.preset),
                safe_text(r.model_name),
                Text(steps[i], justify="right"),
                reward_cell(r.reward_trend),
                safe_text(r.status, style=state_style.get(r.status, "")),
                safe_text("; ".join(r.notes), style="yellow"),
                key=str(i),
            )
        title = self.query_one("#runs-title", Static)
        if self.runs:
            title.update(
                safe_text(
                    f"Runs under {self.runs_root}/: {len(self.runs)} "
                    "(enter: browse its rollouts · space: mark · c: compare marked runs)"
                )
            )
        else:
            title.update(safe_text(f"No runs under {self.runs_root}/ (start one with `grpo-tui`, or pass RUN_DIR)"))

    def _mark(self, r: RunState) -> Text:
        """The date cell, with a dot in front when the run is marked for comparison."""
        marked = r.path in self.marked
        return Text(("● " if marked else "  ") + run_date(r), style="bold cyan" if marked else "")

    def action_mark(self) -> None:
        """Mark (or unmark) the run under the cursor for comparison."""
        table = self.query_one("#runs", DataTable)
        if not self.runs or not 0 <= table.cursor_row < len(self.runs):
            return
        r = self.runs[table.cursor_row]
        self.marked ^= {r.path}
        table.update_cell(str(table.cursor_row), "date", self._mark(r))
        table.move_cursor(row=min(table.cursor_row + 1, len(self.runs) - 1))

    def action_compare(self) -> None:
        """Compare the marked runs (at least two) in the compare screen."""
        from grpo_tui.tui.compare_screen import CompareScreen
        from grpo_tui.tui.console.compare import load_runs

        paths = [r.path for r in self.runs if r.path in self.marked]
        if len(paths) < 2:
            self.notify("mark at least two runs with space, then press c", severity="warning")
            return
        runs, problems = load_runs(paths)
        if problems:
            self.notify("; ".join(problems), severity="error", timeout=10, markup=False)
            return
        self.app.push_screen(CompareScreen(runs))

    def action_open(self) -> None:
        table = self.query_one("#runs", DataTable)
        if self.runs and 0 <= table.cursor_row < len(self.runs):
            self.app.push_screen(RolloutScreen(self.runs[table.cursor_row].path, can_go_back=True))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()
