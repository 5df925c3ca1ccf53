"""Following a run: the poller worker, applying what it finds, and whether the engine still lives.

One thread worker tails events.jsonl and rollouts.jsonl from byte offsets and
posts `RunUpdate` / `EngineExited` messages; everything that touches widgets
runs on the app's thread, in the handlers here. Panels repaint only when their
data changed, and the curves at most every CURVE_MIN_INTERVAL seconds, so
watching a run costs little CPU. Mixed into tui.app.Dashboard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from textual import work
from textual.css.query import NoMatches
from textual.worker import get_current_worker

from grpo_tui.rundir.event_reader import EventTail
from grpo_tui.rundir.events import State
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import RolloutIndex, RolloutTail
from grpo_tui.rundir.state import RunState
from grpo_tui.tui.components.curves import RewardCurves
from grpo_tui.tui.components.dialogs import PreflightError
from grpo_tui.tui.components.error_panel import ErrorPanel, tail_lines
from grpo_tui.tui.components.group_table import GroupTable
from grpo_tui.tui.components.health_panel import HealthPanel
from grpo_tui.tui.components.memory_panel import MemoryPanel
from grpo_tui.tui.components.status_panel import EngineLink, StatusPanel
from grpo_tui.tui.launcher import EngineProcess
from grpo_tui.tui.poller_messages import EngineExited, RunUpdate
from grpo_tui.tui.text import visible

CURVE_MIN_INTERVAL = 1.5  # seconds between plot rebuilds while data streams (a rebuild costs tens of ms)
POLL_ALIVE = 0.25  # seconds between looks at the run directory while the engine lives
POLL_IDLE = 1.0  # ... when no engine process is alive
GONE_AFTER = 3.0  # seconds without an engine process before an active run counts as dead


def while_mounted(callback: Callable[[], None]) -> Callable[[], None]:
    """A timer's callback: a timer can fire once more while the app shuts down, its widgets already removed."""

    def call() -> None:
        with suppress(NoMatches):
            callback()

    return call


class RunFollower:
    """Tails the run directory in a worker and shows what changed: panels, status, title, toasts, engine death."""

    rundir: RunDir
    engine: EngineProcess | None
    state: RunState
    rollouts: RolloutIndex
    link: EngineLink
    poll_interval: float
    idle_interval: float
    preflight_output: str | None
    updates: int  # RunUpdate messages handled (tests wait on it)

    def _init_follower(self) -> None:
        self._stop_polling = threading.Event()
        self._curves_due = False
        self._last_curves = 0.0
        self._dead_since: float | None = None
        self._notified: set[tuple[str, str]] = set()
        self._started_at = time.time()
        self._bindings_key: tuple | None = None

    def on_unmount(self) -> None:
        self._stop_polling.set()

    # ----------------------------------------------------------------- the worker
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
            new_events = list(events)  # to the current end, a chunk at a time
            lines = rollouts.read_new()
            if new_events or lines or alive != was_alive:
                self.post_message(RunUpdate(new_events, lines, alive, pid))
                was_alive = alive
            if self.engine is not None and rc is not None and not exit_reported:
                exit_reported = True
                preflight = rc != 0 and not self.engine.started()  # refused: the run dir may hold an old run
                output = self.engine.preflight_output() if preflight else ""
                self.post_message(EngineExited(rc, preflight, output, tail_lines(self.rundir.engine_log)))
            self._stop_polling.wait(self.poll_interval if alive else self.idle_interval)

    # ----------------------------------------------------------------- the app's side
    def on_run_update(self, msg: RunUpdate) -> None:
        with suppress(NoMatches):  # a message that arrives while the app shuts down
            self._apply_update(msg)

    def _apply_update(self, msg: RunUpdate) -> None:
        changed = self.state.apply(msg.events)
        steps = self.rollouts.add(msg.rollouts)
        if msg.engine_alive != self.link.alive or msg.engine_pid != self.link.pid:
            changed.add("status")
        self.link.alive, self.link.pid = msg.engine_alive, msg.engine_pid
        self._notify_acks(msg.events)
        if "curves" in changed:
            self._schedule_curves()
        if "memory" in changed:
            self.query_one(MemoryPanel).show(self.state)
        if "health" in changed:
            self.query_one(HealthPanel).show(self.state.health)
        if steps:
            groups = self.query_one(GroupTable)
            groups.max_steps = self.state.max_steps
            groups.rollouts_changed(steps)
            self._show_selected(groups)  # in this frame, not one message later
        self._check_gone()
        if changed & {"status", "commands", "error"}:
            self._refresh_status()
        if "error" in changed and self.state.failed:
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
        if self.link.alive or not self.state.active or self.state.run_start is None:
            self._dead_since = None
            if self.link.gone and self.link.alive:
                self.link.gone = self.state.engine_gone = False
            return
        now = time.monotonic()
        if self._dead_since is None:
            self._dead_since = now
            self.set_timer(GONE_AFTER + 0.1, while_mounted(self._check_gone))
        elif now - self._dead_since >= GONE_AFTER and not self.link.gone:
            self.link.gone = self.state.engine_gone = True
            self._show_error("Engine error: the engine process is gone without a run_end (killed or crashed)")
            self._refresh_status()

    def _show_error(self, title: str) -> None:
        self.query_one(ErrorPanel).show(title, self.state.errors, tail_lines(self.rundir.engine_log, 20))

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
                self.notify(
                    f"{ev.get('rule')} at step {ev.get('step')}: see the Health panel (? explains the rules)",
                    title="Health warning",
                    severity="warning",
                    timeout=6,
                )
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
            self.set_timer(wait, while_mounted(self._redraw_curves))

    def _redraw_curves(self) -> None:
        self._curves_due = False
        self._last_curves = time.monotonic()
        self.query_one(RewardCurves).redraw()

    def _tick(self) -> None:
        """Elapsed time and ETA move between steps: repaint the status while the engine works."""
        if self.link.alive and not self.link.gone and self.state.active:
            self._refresh_status()

    def _refresh_status(self) -> None:
        self.query_one(StatusPanel).show(self.state, self.link)
        self._refresh_compact_status()
        # the step lives in the status panel: a title change re-lays out
        self.title = visible(f"grpo-tui · {self._state_words()}")
        # The footer rebuilds itself on refresh_bindings: only when what check_action reads changed.
        key = (self.link.alive, self.state.active, self.state.state in (State.PAUSED, State.PAUSING))
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()
