"""The Textual dashboard: watch a run directory, steer its engine through control/.

The engine is a separate, detached process (tui.launcher); the dashboard only
reads the run directory and drops command files into control/. One thread
worker polls events.jsonl and rollouts.jsonl from byte offsets and posts
`RunUpdate` messages; everything that touches widgets runs on the app's
thread. Panels repaint only when their data changed, and the curves at most
a few times a second, so watching a run costs little CPU.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.events import COMMANDS, EventTail, State
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import RolloutIndex, RolloutTail
from grpo_tui.rundir.state import RunState, fmt_duration
from grpo_tui.tui.components.completion_view import LEGEND as COMPLETION_LEGEND
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.curves import RewardCurves
from grpo_tui.tui.components.dialogs import ConfirmStop, KnobsDialog, PreflightError, PresetPicker, QuitDialog
from grpo_tui.tui.components.error_panel import ErrorPanel, tail_lines
from grpo_tui.tui.components.group_table import LEGEND as GROUP_LEGEND
from grpo_tui.tui.components.group_table import GroupTable
from grpo_tui.tui.components.health_panel import HealthPanel
from grpo_tui.tui.components.memory_panel import BAR_LEVELS, MemoryPanel
from grpo_tui.tui.components.metric_groups import GROUP_NAMES
from grpo_tui.tui.components.status_panel import STATE_STYLE, EngineLink, StatusPanel
from grpo_tui.tui.launcher import EngineProcess, default_run_dir, launch_engine
from grpo_tui.tui.poller_messages import EngineExited, RunUpdate
from grpo_tui.tui.text import safe_text, visible

CURVE_MIN_INTERVAL = 1.5  # seconds between plot rebuilds while data streams (a rebuild is ~10-20 ms each)
POLL_ALIVE = 0.25         # seconds between looks at the run directory while the engine lives
POLL_IDLE = 1.0           # ... when no engine process is alive
GONE_AFTER = 3.0          # seconds without an engine process before an active run counts as dead
# actions named after the commands they send (`set` is sent by the knobs dialog)
CONTROL_ACTIONS = tuple(c.value for c in COMMANDS if c != "set") + ("knobs",)
TICK = 1.0                # seconds between status repaints while the engine lives (elapsed, ETA)
COMPACT_BELOW = (100, 30)  # a terminal narrower or lower than this gets the compact layout: one view at a time
COMPACT_VIEWS = ("curves", "rollouts", "status")


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


class Dashboard(App[int]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "grpo-tui"
    # The help screen (?) lists these keys with their tooltips: a key's one-line help lives here only.
    BINDINGS = [
        Binding("q", "quit", "Quit", tooltip="close the dashboard; with the engine training, asks whether to leave "
                "it running or stop it"),  # first, so a narrow footer never drops it
        Binding("v", "next_view", "View", tooltip="below 100x30 one view shows at a time: curves, rollouts, "
                "status"),
        Binding("question_mark,f1", "help", "Help", key_display="?", tooltip="this screen"),
        Binding("p", "pause", "Pause", tooltip="pause at the next step boundary (memory stays allocated)"),
        Binding("p", "resume", "Resume", tooltip="continue a paused run"),
        Binding("c", "checkpoint", "Checkpoint", tooltip="write a checkpoint at the next step boundary"),
        Binding("s", "stop", "Stop", tooltip="finish the step, checkpoint and stop; asks first (y stops, n or esc "
                "cancels, Enter does nothing)"),
        Binding("w", "switch_preset", "Switch preset", tooltip="checkpoint, then continue the run under another "
                "preset of the same model (type to filter)"),
        Binding("k", "knobs", "Knobs", tooltip="change learning rate, temperature, top_p, beta or reward weights "
                "from the next step, without a restart"),
        Binding("m", "toggle_smoothing", "Smooth", tooltip="smooth the curves (EMA) or show raw values"),
        Binding("g", "next_curves", "Curves", tooltip="next curve group: rewards, policy, optimizer, lengths"),
        Binding("left_square_bracket", "move_step(-1)", "Step", key_display="[ ]",
                tooltip="show the previous / next step's groups"),
        Binding("right_square_bracket", "move_step(1)", "Next step", show=False),
        Binding("comma", "move_group(-1)", "Group", key_display=", .", tooltip="previous / next group of the step"),
        Binding("full_stop", "move_group(1)", "Next group", show=False),
        Binding("f", "follow", "Latest", tooltip="follow the newest step again"),
        Binding("r", "playground", "Rewards", tooltip="reward playground: edit the selected completion and gold, "
                "every reward of the run rescores as you type (esc: back)"),
        Binding("t", "tokens", "Tokens", tooltip="the selected completion token by token, shaded by entropy or "
                "log-probability, forking tokens marked (esc: back)"),
        # attached to a run someone started: Ctrl-C leaves it running (a dashboard that launched it asks first)
        Binding("ctrl+c", "detach", "Detach", show=False, priority=True,
                tooltip="attached: leave the run training and close; launched here: same as q"),
    ]

    def __init__(self, run_dir: Path, *, engine: EngineProcess | None = None, preset_reason: str | None = None,
                 poll_interval: float = POLL_ALIVE, idle_interval: float = POLL_IDLE, preset: str | None = None) -> None:
        super().__init__()
        self.rundir = RunDir(Path(run_dir))
        self.engine = engine
        self.model = RunState()
        self.rollouts = RolloutIndex(self.rundir.rollouts)
        self.link = EngineLink(run_dir=str(run_dir), preset_reason=preset_reason, alive=engine is not None,
                               preset=preset)
        self.stop_sent_on_quit = False
        self.poll_interval, self.idle_interval = poll_interval, idle_interval
        self.preflight_output: str | None = None
        self.left_running = False
        self.updates = 0  # RunUpdate messages handled (tests wait on it)
        self._stop_polling = threading.Event()
        self._curves_due = False
        self._last_curves = 0.0
        self._dead_since: float | None = None
        self._notified: set[tuple[str, str]] = set()
        self._started_at = time.time()
        self._bindings_key: tuple | None = None
        self.compact = False
        self.view = COMPACT_VIEWS[0]  # what the compact layout shows

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compact-status")
        with Horizontal(id="top"):
            with Vertical(id="side"):
                yield StatusPanel(id="status")
                yield MemoryPanel(id="memory")
            yield RewardCurves(self.model, id="curves")
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
        self.set_interval(TICK, self._while_mounted(self._tick))
        self.poll_run()

    def on_resize(self, event: events.Resize) -> None:
        # The side column (status, memory) grows with the terminal, so paths and reasons fit on a wide one.
        width, height = event.size
        compact = width < COMPACT_BELOW[0] or height < COMPACT_BELOW[1]
        side = self.query_one("#side")
        side.styles.width = "1fr" if compact and self.view == "status" else max(40, min(100, int(width * 0.38)))
        if compact != self.compact:
            self.compact = compact
            self.default_screen.set_class(compact, "-compact")
            self._show_view()
            self.refresh_bindings()

    def _show_view(self) -> None:
        for view in COMPACT_VIEWS:
            self.default_screen.set_class(self.compact and self.view == view, f"-view-{view}")
        if self.compact:
            self.query_one("#side").styles.width = "1fr" if self.view == "status" else \
                max(40, min(100, int(self.size.width * 0.38)))
            if self.view == "rollouts":
                self.query_one(GroupTable).table.focus()
        self._refresh_compact_status()

    def action_next_view(self) -> None:
        self.view = COMPACT_VIEWS[(COMPACT_VIEWS.index(self.view) + 1) % len(COMPACT_VIEWS)]
        self._show_view()

    def _refresh_compact_status(self) -> None:
        """The compact layout's one line: what the status panel says first, and which view this is."""
        if not self.compact:
            return
        m = self.model
        state = "engine gone" if self.link.gone else m.state.replace("_", " ")
        last = m.last_step or {}
        reward = (last.get("metrics") or {}).get("reward")
        line = Text(state, style="bold")
        line.append(f"  step {m.step}" + (f"/{m.max_steps}" if m.max_steps else ""))
        eta = m.eta(time.time())
        if eta is not None:
            line.append(f"  ETA {fmt_duration(eta)}")
        if isinstance(reward, (int, float)):
            line.append(f"  reward {reward:.3f}")
        line.append(f"   [{self.view}]  v: next view", style="dim")
        self.query_one("#compact-status", Static).update(safe_text(line, one_line=True))

    def on_unmount(self) -> None:
        self._stop_polling.set()

    # ----------------------------------------------------------------- polling
    def _engine_alive(self) -> tuple[bool, int | None, int | None]:
        """(alive, pid, exit code of our own engine child if it exited)."""
        rc = self.engine.poll() if self.engine is not None else None  # also reaps our child
        pid = self.rundir.engine_pid()
        if self.engine is not None and rc is None and (pid is None or pid == self.engine.pid):
            return True, self.engine.pid, None  # ours, possibly still before it wrote engine.pid
        if self.engine is not None and pid == self.engine.pid:
            return False, None, rc  # engine.pid left behind by our child that was killed
        return pid is not None, pid, rc

    @work(thread=True, exclusive=True, group="poll", name="run-poller")
    def poll_run(self) -> None:
        """Tail the run directory; post what is new. Never touches widgets."""
        worker = get_current_worker()
        events = EventTail(self.rundir.events)
        rollouts = RolloutTail(self.rundir.rollouts)
        was_alive: bool | None = None
        exit_reported = False
        while not worker.is_cancelled and not self._stop_polling.is_set():
            alive, pid, rc = self._engine_alive()  # before reading: whatever a dead engine wrote is read now
            new_events: list[dict[str, Any]] = []
            while True:
                chunk = events.read_new()
                if not chunk:
                    break
                new_events.extend(chunk)
            lines = rollouts.read_new()
            if new_events or lines or alive != was_alive:
                self.post_message(RunUpdate(new_events, lines, alive, pid))
                was_alive = alive
            if self.engine is not None and rc is not None and not exit_reported:
                exit_reported = True
                preflight = rc != 0 and not self.engine.started()  # refused: the run dir may hold an old run
                self.post_message(EngineExited(rc, preflight, self.engine.preflight_output() if preflight else "",
                                               tail_lines(self.rundir.engine_log)))
            self._stop_polling.wait(self.poll_interval if alive else self.idle_interval)

    @staticmethod
    def _while_mounted(callback: Callable[[], None]) -> Callable[[], None]:
        """A timer's callback: a timer can fire once more while the app shuts down, its widgets already removed."""
        def call() -> None:
            with suppress(NoMatches):
                callback()
        return call

    def on_run_update(self, msg: RunUpdate) -> None:
        with suppress(NoMatches):  # a message that arrives while the app shuts down
            self._apply_update(msg)

    def _apply_update(self, msg: RunUpdate) -> None:
        changed = self.model.apply(msg.events)
        steps = self.rollouts.add(msg.rollouts)
        if msg.engine_alive != self.link.alive or msg.engine_pid != self.link.pid:
            changed.add("status")
        self.link.alive, self.link.pid = msg.engine_alive, msg.engine_pid
        self._notify_acks(msg.events)
        if "curves" in changed:
            self._schedule_curves()
            self._refresh_compact_status()
        if "memory" in changed:
            self.query_one(MemoryPanel).show(self.model)
        if "health" in changed:
            self.query_one(HealthPanel).show(self.model.health)
        if steps:
            groups = self.query_one(GroupTable)
            groups.max_steps = self.model.max_steps
            groups.rollouts_changed(steps)
            self._show_selected(groups)  # in this frame, not one message later
        self._check_gone()
        if changed & {"status", "commands", "error"}:
            self._refresh_status()
        if "error" in changed and self.model.failed:
            self._show_error("Engine error: the engine failed")
        self.updates += 1

    def on_engine_exited(self, msg: EngineExited) -> None:
        self.link.exit_code = msg.exit_code
        if msg.preflight:
            self.preflight_output = msg.output
            self.push_screen(PreflightError(msg.output), lambda _: self.exit(2, return_code=2))
            return
        self._check_gone()
        self._refresh_status()

    def _check_gone(self) -> None:
        """An engine that vanished without saying so (killed, OOM) shows as gone, with its log."""
        if self.link.alive or not self.model.active or self.model.run_start is None:
            self._dead_since = None
            if self.link.gone and self.link.alive:
                self.link.gone = self.model.engine_gone = False
            return
        now = time.monotonic()
        if self._dead_since is None:
            self._dead_since = now
            self.set_timer(GONE_AFTER + 0.1, self._while_mounted(self._check_gone))
        elif now - self._dead_since >= GONE_AFTER and not self.link.gone:
            self.link.gone = self.model.engine_gone = True
            self._show_error("Engine error: the engine process is gone without a run_end (killed or crashed)")
            self._refresh_status()

    def _show_error(self, title: str) -> None:
        self.query_one(ErrorPanel).show(title, self.model.errors, tail_lines(self.rundir.engine_log, 20))

    def _notify_acks(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("type") == "command" and ev.get("status") in ("rejected", "done"):
                key = (str(ev.get("id")), str(ev.get("status")))
                if key in self._notified or not self._is_live_event(ev):
                    continue
                self._notified.add(key)
                detail = ev.get("detail") or ""
                if ev.get("status") == "rejected":
                    self.notify(f"{ev.get('command')} rejected: {detail}", severity="error", timeout=8)
                else:
                    self.notify(f"{ev.get('command')}: done" + (f" ({detail})" if detail else ""), timeout=4)
            elif ev.get("type") == "health" and ev.get("status") == "warn" and self._is_live_event(ev):
                # the health panel has the diagnosis and the fix: the toast only points there, so it stays small
                self.notify(f"{ev.get('rule')} at step {ev.get('step')}: see the Health panel (? explains the rules)",
                            title="Health warning", severity="warning", timeout=6)
            elif ev.get("type") == "run_start" and ev.get("resumed") and self._is_live_event(ev):
                self.notify(f"engine continues under preset {ev.get('preset')}", timeout=6)

    def _is_live_event(self, ev: dict[str, Any]) -> bool:
        # Replaying an attached run's history shouldn't pop up old notifications.
        return float(ev.get("t") or 0) >= self._started_at - 5

    def _schedule_curves(self) -> None:
        if self._curves_due:
            return
        wait = self._last_curves + CURVE_MIN_INTERVAL - time.monotonic()
        if wait <= 0:
            self._redraw_curves()
        else:
            self._curves_due = True
            self.set_timer(wait, self._while_mounted(self._redraw_curves))

    def _redraw_curves(self) -> None:
        self._curves_due = False
        self._last_curves = time.monotonic()
        self.query_one(RewardCurves).redraw()

    def _tick(self) -> None:
        """Elapsed time and ETA move between steps: repaint the status while the engine works."""
        if self.link.alive and not self.link.gone and self.model.active:
            self._refresh_status()

    def _refresh_status(self) -> None:
        self.query_one(StatusPanel).show(self.model, self.link)
        self._refresh_compact_status()
        state = "engine gone" if self.link.gone else self.model.state.replace("_", " ")
        self.title = visible(f"grpo-tui · {state}")  # the step lives in the status panel: a title change re-lays out
        # The footer rebuilds itself on refresh_bindings: only when what check_action reads changed.
        key = (self.link.alive, self.model.active, self.model.state in (State.PAUSED, State.PAUSING))
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Notifications quote run data (command details, preset names): always literal text."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=False)

    # ---------------------------------------------------------------- controls
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._own_actions() and self.screen is not self.default_screen:
            # Another screen is up (playground, help): its keys are its own; none reaches the run.
            return False
        return self._allowed(action)

    @classmethod
    def _own_actions(cls) -> frozenset[str]:
        """The dashboard's keys' actions: live only while the dashboard itself is the screen (ctrl+c detach works
        anywhere)."""
        return frozenset(b.action.split("(")[0] for b in cls.BINDINGS) - {"detach"}

    def _allowed(self, action: str) -> bool | None:
        """Whether an action applies to the run now (the command palette asks this too, from its own screen)."""
        if action == "next_view":
            return self.compact
        if action in CONTROL_ACTIONS:
            if not self.model.active:
                return False  # finished, failed or not started: nothing to steer, so the footer offers nothing
            if not self.link.alive:
                return False if action == "resume" else None
            paused = self.model.state in (State.PAUSED, State.PAUSING)
            if action == "pause":
                return not paused
            if action == "resume":
                return paused
        return True

    def _send(self, command: str, **args: Any) -> str | None:
        try:
            cid = send_command(self.rundir.control, command, **args)
        except (OSError, ValueError) as e:
            self.notify(f"could not send {command}: {e}", severity="error")
            return None
        self.model.note_sent(cid, command, time.time())
        self._refresh_status()
        return cid

    def action_pause(self) -> None:
        self._send("pause")

    def action_resume(self) -> None:
        self._send("resume")

    def action_checkpoint(self) -> None:
        self._send("checkpoint")

    def action_stop(self) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self._send("stop")
        self.push_screen(ConfirmStop(), answer)

    def action_switch_preset(self) -> None:
        from grpo_tui.tui.switch_choices import switch_choices

        def chosen(name: str | None) -> None:
            if name and name != self.model.preset:
                self._send("switch_preset", preset=name)
        config = self.model.config or (self.model.run_start or {}).get("config") or {}
        self.push_screen(PresetPicker(switch_choices(config, self.model.preset), self.model.preset), chosen)

    def action_help(self) -> None:
        from grpo_tui.tui.components.dialogs import KnobsDialog, PresetPicker, QuitDialog
        from grpo_tui.tui.components.token_view import TokenScreen
        from grpo_tui.tui.help import HelpScreen, help_sections
        from grpo_tui.tui.playground_screen import PlaygroundScreen
        keys = [("Dashboard keys", self.BINDINGS), ("Stop training? (s)", ConfirmStop.BINDINGS),
                ("Quit (q, while the engine trains)", QuitDialog.BINDINGS),
                ("Switch preset (w)", PresetPicker.BINDINGS), ("Live knobs (k)", KnobsDialog.BINDINGS),
                ("Reward playground (r)", PlaygroundScreen.BINDINGS), ("Token view (t)", TokenScreen.BINDINGS),
                ("Help", HelpScreen.BINDINGS)]
        panels = [(title, cls, legend) for _, title, cls, legend in PANELS]
        self.push_screen(HelpScreen(help_sections(keys, panels)))

    def action_knobs(self) -> None:
        def chosen(args: dict | None) -> None:
            if args:
                self._send("set", **args)
        self.push_screen(KnobsDialog(self.model.knobs_now(), list(self.model.reward_names)), chosen)

    def action_next_curves(self, index: int | None = None) -> None:
        curves = self.query_one(RewardCurves)
        name = curves.set_group(curves.group + 1 if index is None else index)
        self.query_one("#curves").border_title = f"Curves · {name} (g: next)"

    def action_toggle_smoothing(self) -> None:
        on = self.query_one(RewardCurves).toggle_smoothing()
        self.notify("smoothing on" if on else "smoothing off", timeout=2)

    def action_move_step(self, delta: int) -> None:
        self.query_one(GroupTable).move_step(delta)

    def action_move_group(self, delta: int) -> None:
        self.query_one(GroupTable).move_group(delta)

    def action_follow(self) -> None:
        self.query_one(GroupTable).follow_latest()

    def action_detach(self) -> None:
        if self.engine is not None:
            self.action_help_quit()
            return
        self.left_running = self.link.alive and self.model.active
        self.exit(0, return_code=0)

    def action_tokens(self) -> None:
        from grpo_tui.tui.components.token_view import TokenScreen, open_token_view
        if not isinstance(self.screen, TokenScreen):
            open_token_view(self, self.query_one(GroupTable))

    def action_playground(self) -> None:
        """The reward playground on the selected completion, with this run's rewards and prompt format."""
        import json

        from grpo_tui.tui.playground_screen import PlaygroundScreen
        if isinstance(self.screen, PlaygroundScreen):
            return
        try:
            cfg = json.loads(self.rundir.config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        rewards = cfg.get("rewards") if isinstance(cfg.get("rewards"), dict) else None
        fmt = (cfg.get("prompt") or {}).get("format") or "reasoning"
        source = cfg.get("source")
        base_dir = Path(source).parent if isinstance(source, str) and source else None
        groups = self.query_one(GroupTable)
        group, row = groups.current_group, groups.table.cursor_row
        comps = (group or {}).get("completions") or []
        kw = {}
        if group is not None and 0 <= row < len(comps):
            kw = {"completion": str(comps[row].get("text", "")), "gold": str(group.get("gold", ""))}
        self.push_screen(PlaygroundScreen(rewards, fmt, base_dir, source=self.model.preset if rewards else "", **kw))

    async def action_quit(self) -> None:
        if not (self.link.alive and self.model.active):
            code = 1 if self.model.failed or self.link.gone else 0
            self.exit(code, return_code=code)
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":
                self.stop_sent_on_quit = self._send("stop") is not None
                self.exit(0)
            elif choice == "leave":
                self.left_running = True
                self.exit(0)
        self.push_screen(QuitDialog(self.link.run_dir), answer)

    def on_group_table_completion_selected(self, msg: GroupTable.CompletionSelected) -> None:
        with suppress(NoMatches):  # a message that arrives while the app shuts down
            self.query_one(CompletionView).show(msg.step, msg.group, msg.index)

    def _show_selected(self, groups: GroupTable) -> None:
        group = groups.current_group
        if group is not None and groups.step is not None:
            self.query_one(CompletionView).show(groups.step, group, groups.table.cursor_row)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self._allowed("pause"):
            yield SystemCommand("Pause training", "Pause at the next step boundary (memory stays allocated)",
                                self.action_pause)
        if self._allowed("resume"):
            yield SystemCommand("Resume training", "Continue a paused run", self.action_resume)
        if self._allowed("checkpoint"):
            yield SystemCommand("Checkpoint now", "Write a checkpoint at the next step boundary",
                                self.action_checkpoint)
            yield SystemCommand("Stop training", "Finish the step, checkpoint and stop (asks first)",
                                self.action_stop)
            yield SystemCommand("Switch preset", "Checkpoint, then continue the run under another preset",
                                self.action_switch_preset)
        if self._allowed("knobs"):
            yield SystemCommand("Change live knobs", "Learning rate, temperature, top_p, beta, reward weights "
                                "from the next step, without a restart", self.action_knobs)
        for i, name in enumerate(GROUP_NAMES):
            yield SystemCommand(f"Curves: {name}", f"Show the {name} curves (g cycles the groups)",
                                lambda i=i: self.action_next_curves(i))
        yield SystemCommand("Toggle smoothing", "Smooth the curves (EMA) or show raw values",
                            self.action_toggle_smoothing)
        yield SystemCommand("Follow latest step", "Show the newest step's groups", self.action_follow)
        yield SystemCommand("Reward playground", "Edit the selected completion and gold answer; every reward "
                            "of the run recomputes as you type", self.action_playground)


def run_dashboard(preset: str | None, run_dir: Path | None, max_steps: int | None = None,
                  overrides: list[str] = (), attach: bool = False, preset_reason: str | None = None,
                  resume: bool = False, restart: bool = False) -> int:
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
        sys.stderr.write(app.preflight_output if app.preflight_output.strip() else "the engine exited before starting\n")
        return 2
    if app.stop_sent_on_quit:
        pid = RunDir(Path(run_dir)).engine_pid()
        print(f"Stop sent: the engine (pid {pid}) finishes step {app.model.step + 1}, writes a checkpoint and exits. "
              f"Continue later with: grpo-tui --resume --run-dir {run_dir}")
    if app.left_running:
        pid = RunDir(Path(run_dir)).engine_pid()
        print(f"Detached: training continues in the background (engine pid {pid}). Re-attach with: "
              f"grpo-tui attach {run_dir}; stop it with: grpo-tui stop {run_dir} (or attach, then s)")
    return rc if isinstance(rc, int) else 0
