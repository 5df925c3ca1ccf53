"""Steering the run: which controls apply now, sending commands to control/, and the dialogs that ask first.

The dashboard never signals the engine: it drops a command file that the engine
acts on at its next step boundary, and the ack comes back as an event
(tui.run_follower shows it). Mixed into tui.app.Dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from textual.app import SystemCommand

from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.events import COMMANDS, State
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.state import RunState
from grpo_tui.tui.components.dialogs import ConfirmStop, KnobsDialog, PresetPicker, QuitDialog
from grpo_tui.tui.components.status_panel import EngineLink
from grpo_tui.tui.launcher import EngineProcess

# actions named after the commands they send (`set` is sent by the knobs dialog)
CONTROL_ACTIONS = tuple(c.value for c in COMMANDS if c != "set") + ("knobs",)


class RunControls:
    """Pause, resume, checkpoint, stop, switch preset, live knobs, quit and detach."""

    rundir: RunDir
    engine: EngineProcess | None
    state: RunState
    link: EngineLink
    stop_sent_on_quit: bool
    left_running: bool

    def _allowed(self, action: str) -> bool | None:
        """Whether an action applies to the run now (the command palette asks this too, from its own screen)."""
        if action in CONTROL_ACTIONS:
            if not self.state.active:
                return False  # finished, failed or not started: nothing to steer, so the footer offers nothing
            if not self.link.alive:
                return False if action == "resume" else None
            paused = self.state.state in (State.PAUSED, State.PAUSING)
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
        self.state.note_sent(cid, command, time.time())
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
            if name and name != self.state.preset:
                self._send("switch_preset", preset=name)

        config = self.state.config or (self.state.run_start or {}).get("config") or {}
        self.push_screen(PresetPicker(switch_choices(config, self.state.preset), self.state.preset), chosen)

    def action_knobs(self) -> None:
        def chosen(args: dict | None) -> None:
            if args:
                self._send("set", **args)

        self.push_screen(KnobsDialog(self.state.knobs_now(), list(self.state.reward_names)), chosen)

    def action_detach(self) -> None:
        if self.engine is not None:
            self.action_help_quit()
            return
        self.left_running = self.link.alive and self.state.active
        self.exit(0, return_code=0)

    async def action_quit(self) -> None:
        if not (self.link.alive and self.state.active):
            code = 1 if self.state.failed or self.link.gone else 0
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

    def control_commands(self) -> Iterator[SystemCommand]:
        """The command palette's entries for the controls that apply now."""
        if self._allowed("pause"):
            yield SystemCommand(
                "Pause training", "Pause at the next step boundary (memory stays allocated)", self.action_pause
            )
        if self._allowed("resume"):
            yield SystemCommand("Resume training", "Continue a paused run", self.action_resume)
        if self._allowed("checkpoint"):
            yield SystemCommand(
                "Checkpoint now", "Write a checkpoint at the next step boundary", self.action_checkpoint
            )
            yield SystemCommand("Stop training", "Finish the step, checkpoint and stop (asks first)", self.action_stop)
            yield SystemCommand(
                "Switch preset", "Checkpoint, then continue the run under another preset", self.action_switch_preset
            )
        if self._allowed("knobs"):
            yield SystemCommand(
                "Change live knobs",
                "Learning rate, temperature, top_p, beta, reward weights from the next step, without a restart",
                self.action_knobs,
            )
