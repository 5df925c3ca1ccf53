"""Messages the run poller (a thread worker) posts to the app; it never touches widgets itself."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from grpo_tui.rundir.rollouts import GroupLine


class RunUpdate(Message):
    """New events and rollout lines from the run directory, and whether the engine is alive."""

    def __init__(
        self, events: list[dict[str, Any]], rollouts: list[GroupLine], engine_alive: bool, engine_pid: int | None
    ) -> None:
        super().__init__()
        self.events = events
        self.rollouts = rollouts
        self.engine_alive = engine_alive
        self.engine_pid = engine_pid


class EngineExited(Message):
    """The engine process is gone. preflight: it failed its checks before starting the run."""

    def __init__(self, exit_code: int | None, preflight: bool, output: str, log_tail: str) -> None:
        super().__init__()
        self.exit_code = exit_code
        self.preflight = preflight
        self.output = output
        self.log_tail = log_tail
