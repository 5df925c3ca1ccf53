"""The compare screen: several runs' curves overlaid by step, and the settings that differ.

Opened by `grpo-tui compare RUN RUN...` and from the browser's run list (mark runs
with space, then c). The data is tui.console.compare's (shared with `--no-ui`).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext.plot import Plot

from grpo_tui.tui.components.curves import REWARD_COLORS, CurvePlot, _points, downsample, legend, step_ticks
from grpo_tui.tui.console.compare import SERIES, RunCurves, config_differences
from grpo_tui.tui.text import safe_text, visible


def run_color(i: int) -> int:
    return REWARD_COLORS[i % len(REWARD_COLORS)]


class CompareScreen(Screen):
    """Four plots (reward, correct, mean length, KL), one line per run, over a table of differing settings."""

    BINDINGS = [Binding("q,escape", "close", "Back/Quit")]
    DEFAULT_CSS = """
    CompareScreen #compare-legend { height: auto; padding: 0 1; }
    CompareScreen #compare-plots { grid-size: 2 2; height: 1fr; min-height: 10; }
    CompareScreen #compare-plots CurvePlot { border: round $primary 60%; border-title-color: $text; }
    CompareScreen #compare-diff { height: auto; max-height: 40%; border: round $primary 60%;
                                  border-title-color: $text; }
    """

    def __init__(self, runs: list[RunCurves]) -> None:
        super().__init__()
        self.runs = runs
        self.standalone = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static(
                legend([(visible(r.name, one_line=True), run_color(i)) for i, r in enumerate(self.runs)]),
                id="compare-legend",
            )
            with Grid(id="compare-plots"):
                for key, label in SERIES:
                    yield CurvePlot(self._drawer(key, label), id=f"plot-{key}")
            yield DataTable(id="compare-diff", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = visible(" vs ".join(r.name for r in self.runs), one_line=True)
        for key, label in SERIES:
            self.query_one(f"#plot-{key}").border_title = label
        table = self.query_one("#compare-diff", DataTable)
        table.border_title = "Settings that differ (config.json)"
        table.add_column("setting", key="setting")
        for i, r in enumerate(self.runs):
            table.add_column(safe_text(r.name, one_line=True, style=f"bold color({run_color(i)})"), key=str(i))
        rows = config_differences(self.runs)
        for key, values in rows:
            table.add_row(safe_text(key), *(safe_text(v, one_line=True) for v in values))
        if not rows:
            table.add_row(Text("the runs have the same settings", style="dim"), *([""] * len(self.runs)))

    def _drawer(self, key: str, label: str) -> Any:
        def draw(plt: Plot, width: int, height: int) -> None:
            drawn = False
            for i, r in enumerate(self.runs):
                xs, ys = downsample(r.steps, r.series.get(key, []), _points(width))
                if xs:
                    plt.plot(xs, ys, color=run_color(i), marker="braille" if len(xs) > 1 else "●")
                    drawn = True
            steps = [s for r in self.runs for s in r.steps]
            if steps:
                plt.xticks(step_ticks(min(steps), max(steps)))
            if not drawn:
                plt.title(f"{label}: no values" + (" (beta = 0: no KL term)" if key == "kl" else ""))
            if key == "correct" and drawn:
                plt.ylim(0, 1)

        return draw

    def action_close(self) -> None:
        if self.standalone:  # the whole app (`grpo-tui compare` / `rewards --ui`): leave it
            self.app.exit(0)
        else:
            self.app.pop_screen()


class CompareApp(App[int]):
    TITLE = "grpo-tui compare"

    def __init__(self, runs: list[RunCurves]) -> None:
        super().__init__()
        self.runs = runs

    def on_mount(self) -> None:
        screen = CompareScreen(self.runs)
        screen.standalone = True
        self.push_screen(screen)


def run_compare(runs: list[RunCurves]) -> int:
    app = CompareApp(runs)
    result = app.run()
    if app.return_code:  # it crashed (Textual printed the traceback)
        return app.return_code
    return int(result or 0)
