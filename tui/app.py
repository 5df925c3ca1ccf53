"""The Textual dashboard: watch a run directory, steer its engine through control/.

The engine is a separate, detached process (tui.launcher); the dashboard only
reads the run directory and drops command files into control/. This module
composes the screen and owns its keys; the jobs behind them live in mixins:
following the run (tui.run_follower), steering it (tui.run_controls) and what
is shown (tui.dashboard_views).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import RolloutIndex
from grpo_tui.rundir.state import RunState
from grpo_tui.tui.components.completion_view import LEGEND as COMPLETION_LEGEND
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.curves import RewardCurves
from grpo_tui.tui.components.dialogs import ConfirmStop, KnobsDialog, PresetPicker, QuitDialog
from grpo_tui.tui.components.error_panel import ErrorPanel
from grpo_tui.tui.components.group_table import LEGEND as GROUP_LEGEND
from grpo_tui.tui.components.group_table import GroupTable
from grpo_tui.tui.components.health_panel import HealthPanel
from grpo_tui.tui.components.memory_panel import BAR_LEVELS, MemoryPanel
from grpo_tui.tui.components.status_panel import STATE_STYLE, EngineLink, StatusPanel
from grpo_tui.tui.dashboard_views import COMPACT_VIEWS, DashboardViews
from grpo_tui.tui.launcher import EngineProcess, default_run_dir, launch_engine
from grpo_tui.tui.run_controls import RunControls
from grpo_tui.tui.run_follower import POLL_ALIVE, POLL_IDLE, RunFollower, while_mounted
from grpo_tui.tui.text import LiteralNotifications, visible

TICK = 1.0  # seconds between status repaints while the engine lives (elapsed, ETA)


# The panels, for their titles and the help screen: (widget id, title, class, colour legend or ()).
PANELS: tuple[tuple[str, str, type, tuple[tuple[str, str], ...]], ...] = (
    ("status", "Status", StatusPanel, tuple((style, state) for state, style in STATE_STYLE.items())),
    ("memory", "Memory", MemoryPanel, tuple((style, meaning) for _, style, meaning in BAR_LEVELS)),
    ("curves", "Curves", RewardCurves, ()),
    ("groups", "Group rewards", GroupTable, GROUP_LEGEND),
    ("completion", "Completion", CompletionView, COMPLETION_LEGEND),
    ("health", "Health", HealthPanel, ()),
    ("error", "Engine error", ErrorPanel, ()),
)


class Dashboard(LiteralNotifications, RunFollower, RunControls, DashboardViews, App[int]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "grpo-tui"
    # The help screen (?) lists these keys with their tooltips: a key's one-line help lives here only.
    BINDINGS = [
        Binding(
            "q",
            "quit",
            "Quit",
            tooltip="close the dashboard; with the engine training, asks whether to leave it running or stop it",
        ),  # first, so a narrow footer never drops it
        Binding("v", "next_view", "View", tooltip="below 100x30 one view shows at a time: curves, rollouts, status"),
        Binding("question_mark,f1", "help", "Help", key_display="?", tooltip="this screen"),
        Binding("p", "pause", "Pause", tooltip="pause at the next step boundary (memory stays allocated)"),
        Binding("p", "resume", "Resume", tooltip="continue a paused run"),
        Binding("c", "checkpoint", "Checkpoint", tooltip="write a checkpoint at the next step boundary"),
        Binding(
            "s",
            "stop",
            "Stop",
            tooltip="finish the step, checkpoint and stop; asks first (y stops, n or esc cancels, Enter does nothing)",
        ),
        Binding(
            "w",
            "switch_preset",
            "Switch preset",
            tooltip="checkpoint, then continue the run under another preset of the same model (type to filter)",
        ),
        Binding(
            "k",
            "knobs",
            "Knobs",
            tooltip="change learning rate, temperature, top_p, beta or reward weights "
            "from the next step, without a restart",
        ),
        Binding("m", "toggle_smoothing", "Smooth", tooltip="smooth the curves (EMA) or show raw values"),
        Binding("g", "next_curves", "Curves", tooltip="next curve group: rewards, policy, optimizer, lengths"),
        Binding(
            "left_square_bracket",
            "move_step(-1)",
            "Step",
            key_display="[ ]",
            tooltip="show the previous / next step's groups",
        ),
        Binding("right_square_bracket", "move_step(1)", "Next step", show=False),
        Binding("comma", "move_group(-1)", "Group", key_display=", .", tooltip="previous / next group of the step"),
        Binding("full_stop", "move_group(1)", "Next group", show=False),
        Binding("f", "follow", "Latest", tooltip="follow the newest step again"),
        Binding(
            "r",
            "playground",
            "Rewards",
            tooltip="reward playground: edit the selected completion and gold, "
            "every reward of the run rescores as you type (esc: back)",
        ),
        Binding(
            "t",
            "tokens",
            "Tokens",
            tooltip="the selected completion token by token, shaded by entropy or "
            "log-probability, forking tokens marked (esc: back)",
        ),
        # attached to a run someone started: Ctrl-C leaves it running (a dashboard that launched it asks first)
        Binding(
            "ctrl+c",
            "detach",
            "Detach",
            show=False,
            priority=True,
            tooltip="attached: leave the run training and close; launched here: same as q",
        ),
    ]

    def __init__(
        self,
        run_dir: Path,
        *,
        engine: EngineProcess | None = None,
        preset_reason: str | None = None,
        poll_interval: float = POLL_ALIVE,
        idle_interval: float = POLL_IDLE,
        preset: str | None = None,
    ) -> None:
        super().__init__()
        self.rundir = RunDir(Path(run_dir))
        self.engine = engine
        self.state = RunState()
        self.rollouts = RolloutIndex(self.rundir.rollouts)
        self.link = EngineLink(
            run_dir=str(run_dir), preset_reason=preset_reason, alive=engine is not None, preset=preset
        )
        self.stop_sent_on_quit = False
        self.poll_interval, self.idle_interval = poll_interval, idle_interval
        self.preflight_output: str | None = None
        self.left_running = False
        self.updates = 0  # RunUpdate messages handled (tests wait on it)
        self.compact = False
        self.view = COMPACT_VIEWS[0]  # what the compact layout shows
        self._init_follower()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compact-status")
        with Horizontal(id="top"):
            with Vertical(id="side"):
                yield StatusPanel(id="status")
                yield MemoryPanel(id="memory")
            yield RewardCurves(self.state, id="curves")
        with Horizontal(id="bottom"):
            yield GroupTable(self.rollouts, id="groups")
            yield CompletionView(id="completion")
        yield HealthPanel(id="health")
        yield ErrorPanel(id="error")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = visible(self.link.run_dir)
        for wid, title, _, _ in PANELS:
            if wid != "health":  # titled with its count of warnings
                self.query_one(f"#{wid}").border_title = title
        self.query_one("#curves").border_title = "Curves · rewards (g: next)"
        self._refresh_status()
        self.query_one(GroupTable).table.focus()
        self.set_interval(TICK, while_mounted(self._tick))
        self.poll_run()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._own_actions() and self.screen is not self.default_screen:
            # Another screen is up (playground, help): its keys are its own; none reaches the run.
            return False
        if action == "next_view":
            return self.compact
        return self._allowed(action)

    @classmethod
    @functools.cache  # BINDINGS is a class constant; Textual asks check_action for every binding it shows
    def _own_actions(cls) -> frozenset[str]:
        """The dashboard's keys' actions: live only while the dashboard itself is the screen (ctrl+c detach works
        anywhere)."""
        return frozenset(b.action.split("(")[0] for b in cls.BINDINGS) - {"detach"}

    def action_help(self) -> None:
        from grpo_tui.tui.components.token_view import TokenScreen
        from grpo_tui.tui.help import HelpScreen, help_sections
        from grpo_tui.tui.playground_screen import PlaygroundScreen

        keys = [
            ("Dashboard keys", self.BINDINGS),
            ("Stop training? (s)", ConfirmStop.BINDINGS),
            ("Quit (q, while the engine trains)", QuitDialog.BINDINGS),
            ("Switch preset (w)", PresetPicker.BINDINGS),
            ("Live knobs (k)", KnobsDialog.BINDINGS),
            ("Reward playground (r)", PlaygroundScreen.BINDINGS),
            ("Token view (t)", TokenScreen.BINDINGS),
            ("Help", HelpScreen.BINDINGS),
        ]
        panels = [(title, cls, legend) for _, title, cls, legend in PANELS]
        self.push_screen(HelpScreen(help_sections(keys, panels)))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.control_commands()
        yield from self.view_commands()


def run_dashboard(
    preset: str | None,
    run_dir: Path | None,
    max_steps: int | None = None,
    overrides: list[str] = (),
    attach: bool = False,
    preset_reason: str | None = None,
    resume: bool = False,
    restart: bool = False,
) -> int:
    """Open the dashboard on a new run (launching the engine) or an existing one (attach). Returns the exit code.

    resume: launch the engine with --resume on run_dir (preset optional: the run's own config by default).
    """
    if attach:
        if run_dir is None or not RunDir(Path(run_dir)).exists():
            print(f"error: {run_dir} is not a run directory (no events.jsonl).", file=sys.stderr)
            return 2
        app = Dashboard(Path(run_dir), preset_reason=preset_reason)
    else:
        if not preset and not ((resume or restart) and run_dir is not None):
            print("error: a preset is needed to start a run.", file=sys.stderr)
            return 2
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(preset)
        engine = launch_engine(preset, run_dir, max_steps, list(overrides), resume=resume, restart=restart)
        app = Dashboard(run_dir, engine=engine, preset_reason=preset_reason, preset=preset)
    rc = app.run()
    if app.return_code and not isinstance(rc, int):  # it crashed (Textual printed the traceback)
        return app.return_code
    if app.preflight_output is not None:
        output = app.preflight_output
        sys.stderr.write(output if output.strip() else "the engine exited before starting\n")
        return 2
    if app.stop_sent_on_quit:
        pid = RunDir(Path(run_dir)).engine_pid()
        print(
            f"Stop sent: the engine (pid {pid}) finishes step {app.state.step + 1}, writes a checkpoint and exits. "
            f"Continue later with: grpo-tui --resume --run-dir {run_dir}"
        )
    if app.left_running:
        pid = RunDir(Path(run_dir)).engine_pid()
        print(
            f"Detached: training continues in the background (engine pid {pid}). Re-attach with: "
            f"grpo-tui attach {run_dir}; stop it with: grpo-tui stop {run_dir} (or attach, then s)"
        )
    return rc if isinstance(rc, int) else 0
