"""Commands from control/ at step boundaries: the one pause/resume/stop state machine.

Both training stages (GRPO, and the SFT cold start before it) act on commands
the same way:

- `CommandWatcher` (a thread) polls the control channel, acknowledges each
  command at once (accepted/rejected, plus a pending state such as "pausing")
  and queues it for the next step boundary.
- `StepCommands._handle_commands` runs at each step boundary, in the training
  thread: it takes the queued commands in arrival order and acts on them.
  `pause` blocks right there (the model and optimizer stay in memory, so
  resuming is instant) until `resume`, `stop` or `switch_preset`.
- A stage lists the commands it acts on (`handles`). The others wait for a
  later stage: they go back to the FRONT of the queue, in arrival order, when
  the boundary is done. The same happens to what arrived after the resume or
  stop that ended a pause in the same batch. So does a `set` that can't apply at
  this boundary (`command_set` returns False): it applies at the first one where it can.

A stage supplies what the commands mean for it through the `on_*` hooks and
how its state events look (`state_fields`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpo_tui.engine import distributed
from grpo_tui.rundir.control import take_commands
from grpo_tui.rundir.events import COMMANDS, Command, State

ALL_COMMANDS = frozenset(COMMANDS)


class CommandWatcher(threading.Thread):
    """Polls control/ every 0.2 s, acknowledges at once, queues for the step boundary."""

    def __init__(self, control_dir: Path, events: Any, check_switch: Callable[[str], str | None] | None = None) -> None:
        super().__init__(name="command-watcher", daemon=True)
        self.control_dir, self.events = control_dir, events
        # check_switch(preset) -> None if the run can continue under that preset, else why not
        self.check_switch = check_switch or (lambda preset: "switching presets is not available here")
        self.queue: queue.Queue[dict] = queue.Queue()
        # live knobs: check_set(args) -> cleaned values, or raises KnobError; given by accept_set once the GRPO
        # trainer exists. Until then `set` is refused.
        self.check_set: Callable[[dict], dict] | None = None
        self._halt = threading.Event()  # not `_stop`: threading.Thread.join calls its own _stop()
        self.paused = threading.Event()

    def accept_set(self, check_set: Callable[[dict], dict]) -> None:
        """Accept `set` commands from now on, each validated by check_set (cleaned values, or KnobError)."""
        self.check_set = check_set

    def run(self) -> None:
        while not self._halt.wait(0.2):
            self.poll()

    def poll(self) -> None:
        for cmd in take_commands(self.control_dir):
            self.submit(cmd)

    def submit(self, cmd: dict) -> None:
        name = cmd.get("command")
        why_not = None
        if name == "invalid":
            why_not = f"not a command: {cmd.get('args')}"
        elif name == "switch_preset":
            preset = (cmd.get("args") or {}).get("preset")
            why_not = "switch_preset needs args.preset" if not preset else self.check_switch(str(preset))
        elif name == "set":  # live knobs, validated now so a bad value is refused at once
            why_not = self._check_set(cmd)
        if why_not:
            self.events.emit("command", id=cmd.get("id"), command=name, status="rejected", detail=why_not)
            return
        self.events.emit("command", id=cmd.get("id"), command=name, status="accepted")
        pending = {
            Command.PAUSE: State.PAUSING,
            Command.CHECKPOINT: State.CHECKPOINTING,
            Command.STOP: State.STOPPING,
            Command.SWITCH_PRESET: State.CHECKPOINTING,
        }.get(name)
        if pending and not (name == "pause" and self.paused.is_set()):
            self.events.state(pending)
        self.queue.put(cmd)

    def _check_set(self, cmd: dict) -> str | None:
        from grpo_tui.rundir.knobs import KnobError

        if self.check_set is None:
            return "live knobs apply once GRPO training runs (the model is still loading, or an SFT stage runs)"
        try:
            cmd["args"] = self.check_set(cmd.get("args") or {})
        except KnobError as e:
            return str(e)
        return None

    def requeue(self, cmds: list[dict]) -> None:
        """Put commands back at the front of the queue, ahead of anything that arrived since."""
        if not cmds:
            return
        rest = self.drain()
        for cmd in [*cmds, *rest]:
            self.queue.put(cmd)

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._halt.set()

    def close(self, why: str = "the run ended before its next step boundary") -> None:
        """Stop polling and answer every command accepted but not acted on: none is left pending forever (a `set`
        sent during the last step, a pause after it). Commands still in control/ stay there for a resumed run."""
        self.stop()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=2.0)  # a poll in progress may still accept one
        for cmd in self.drain():
            self.events.emit("command", id=cmd.get("id"), command=cmd.get("command"), status="rejected", detail=why)


class StepCommands:
    """The state machine a training callback mixes in. Needs `watcher`, `events`, `t_last`."""

    handles: frozenset[str] = ALL_COMMANDS
    watcher: CommandWatcher | None
    events: Any
    t_last: float
    stop_requested: bool = False

    # ----------------------------------------------------------- stage hooks
    def state_fields(self, state_name: str, state: Any) -> dict[str, Any]:
        """Fields of a `state` event this machine emits (step, detail)."""
        return {"step": state.global_step}

    def command_stop(self, state: Any, control: Any, cid: str | None) -> None:
        raise NotImplementedError

    def command_checkpoint(self, state: Any, control: Any, cid: str | None, paused: bool) -> None:
        raise NotImplementedError

    def command_switch(self, state: Any, control: Any, cmd: dict) -> None:
        raise NotImplementedError

    def command_set(self, state: Any, cmd: dict) -> bool:
        """Live knobs; a stage without them refuses. Returns False to keep the command for a later boundary
        (it can't apply at this one), True when it was acted on."""
        self._emit_command(cmd.get("id"), "set", "rejected", "live knobs apply to GRPO training only")
        return True

    def before_pause(self, state: Any, control: Any) -> None:
        """Called once a pause is decided, before the stage blocks (e.g. a save asked for with it)."""

    def after_commands(self, state: Any) -> None:
        """Called at the end of every boundary that had commands."""

    def pause_began(self) -> None:
        """The stage is now blocked in a pause (its time must not count as step time)."""

    def pause_ended(self) -> None:
        """The pause is over (resumed, stopping or switching)."""

    # ----------------------------------------------------------- the machine
    def _emit_state(self, name: str, state: Any) -> None:
        self.events.state(name, **self.state_fields(name, state))

    def _emit_command(self, cid: str | None, name: str, status: str, detail: str | None = None) -> None:
        if detail is None:
            self.events.emit("command", id=cid, command=name, status=status)
        else:
            self.events.emit("command", id=cid, command=name, status=status, detail=detail)

    def _fetch(self) -> list[dict]:
        """Rank 0 reads the queue; every rank gets the same list (the ranks stay in step)."""
        if self.watcher is None:
            return []
        return distributed.broadcast(self.watcher.drain() if distributed.is_main() else None)

    def _handle_commands(self, state: Any, control: Any) -> None:
        """Act on the queued commands at this step boundary (may block in a pause)."""
        cmds = self._fetch()
        held: list[dict] = []  # for a later stage, or after the end of a pause: back to the front, in order
        for i, cmd in enumerate(cmds):
            name, cid = cmd.get("command"), cmd.get("id")
            if name not in self.handles:
                held.append(cmd)
            elif name == "switch_preset":
                self.command_switch(state, control, cmd)
            elif name == "checkpoint":
                self.command_checkpoint(state, control, cid, paused=False)
            elif name == "stop":
                self.command_stop(state, control, cid)
            elif name == "set":
                if not self.command_set(state, cmd):
                    held.append(cmd)
            elif name == "pause" and self.stop_requested:
                self._emit_command(cid, "pause", "rejected", "the run is stopping")
            elif name == "pause":
                # commands that arrived after the pause in the same batch (a quick resume or stop)
                # are the first ones the pause acts on
                held += self._pause(state, control, cid, pending=cmds[i + 1 :])
                break
            elif name == "resume":
                self._emit_command(cid, "resume", "rejected", "not paused")
        if held and self.watcher is not None and distributed.is_main():
            self.watcher.requeue(held)
        self.after_commands(state)

    def _pause(self, state: Any, control: Any, cid: str | None, pending: list[dict]) -> list[dict]:
        """Block at the step boundary until resume, stop or switch; returns the commands to hold over."""
        self.before_pause(state, control)
        self.watcher.paused.set()
        self.events.state("paused", **self.state_fields("paused", state))
        self.events.emit("command", id=cid, command="pause", status="done")
        paused_at = time.time()
        self.pause_began()
        held: list[dict] = []
        cmds = list(pending)
        while True:
            if not cmds:
                if distributed.is_main():
                    time.sleep(0.1)
                cmds = self._fetch()
            if not cmds:
                continue
            done = False
            for j, cmd in enumerate(cmds):
                if done:
                    held += cmds[j:]  # what came after the resume/stop is handled at the next boundary
                    break
                name, ccid = cmd.get("command"), cmd.get("id")
                if name == "resume":
                    self._emit_command(ccid, "resume", "done")
                    done = True
                elif name not in self.handles:
                    held.append(cmd)
                elif name == "checkpoint":
                    self.command_checkpoint(state, control, ccid, paused=True)
                    self._emit_state("paused", state)
                elif name == "stop":
                    self.command_stop(state, control, ccid)
                    done = True
                elif name == "switch_preset":
                    self.command_switch(state, control, cmd)
                    done = True
                elif name == "set":  # applies at once: the next step starts with the new values
                    if not self.command_set(state, cmd):
                        held.append(cmd)
                elif name == "pause":
                    self._emit_command(ccid, "pause", "done", "already paused")
            cmds = []
            if done:
                break
        self.watcher.paused.clear()
        self.t_last += time.time() - paused_at  # paused time is not step time
        self.pause_ended()
        if not self.stop_requested:
            self._emit_state("running", state)
        return held
