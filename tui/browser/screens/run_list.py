"""The run picker: `grpo-tui browse` without a RUN_DIR."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.browser.messages import RunsListed
from rundir.state import RunState
from tui.browser.runs import list_runs, run_date
from tui.browser.screens.rollouts import RolloutScreen
from tui.browser.widgets import num_cell


class RunListScreen(Screen):
    BINDINGS = [Binding("q", "app.quit", "Quit"), Binding("r", "reload", "Reload"),
                Binding("enter", "open", "Open", show=True)]

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = Path(runs_root)
        self.runs: list[RunState] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Runs under {self.runs_root}/ (reading…)", id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, width in (("date", 16), ("run", 28), ("preset", 12), ("model", 24), ("steps", 9),
                             ("reward", 7), ("state", 9), ("notes", 40)):
            table.add_column(label, key=label, width=width)
        table.focus()
        self.action_reload()

    @work(thread=True, exclusive=True, group="runs")
    def action_reload(self) -> None:
        self.post_message(RunsListed(list_runs(self.runs_root)))

    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs", DataTable)
        table.clear()
        state_style = {"finished": "green", "running": "bold cyan", "failed": "red", "gone": "yellow",
                       "stopped": "yellow", "paused": "cyan"}
        for i, r in enumerate(self.runs):
            steps = "-" if not r.steps else f"{r.step}" + (f"/{r.max_steps}" if r.max_steps else "")
            table.add_row(run_date(r), r.path.name, r.preset, r.model_name, Text(steps, justify="right"),
                          num_cell(r.last_reward), Text(r.status, style=state_style.get(r.status, "")),
                          Text("; ".join(r.notes), style="yellow"), key=str(i))
        title = self.query_one("#runs-title", Static)
        if self.runs:
            title.update(f"Runs under {self.runs_root}/: {len(self.runs)} (enter: browse its rollouts)")
        else:
            title.update(f"No runs under {self.runs_root}/ (start one with `grpo-tui`, or pass RUN_DIR)")

    def action_open(self) -> None:
        table = self.query_one("#runs", DataTable)
        if self.runs and 0 <= table.cursor_row < len(self.runs):
            self.app.push_screen(RolloutScreen(self.runs[table.cursor_row].path, can_go_back=True))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()
