"""The step boundary: `step` and `memory` events after every optimizer step, and commands acted on there.

Pause, resume, checkpoint, stop, switch and live knobs follow the state machine of engine/train/commands.py;
health rules see every step event.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpo_tui.engine import distributed
from grpo_tui.engine.rewards.trl_call import TrlReward
from grpo_tui.engine.train.apply_knobs import apply_knobs, check_knobs, save_knobs, set_base_learning_rate, wait_reason
from grpo_tui.engine.train.commands import CommandWatcher, StepCommands
from grpo_tui.engine.train.generation_bound import GenerationBound
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer
from grpo_tui.engine.train.phase_timer import EXCLUDED
from grpo_tui.engine.train.rollout_recorder import RolloutRecorder
from grpo_tui.engine.train.telemetry import MemoryProbe
from grpo_tui.rundir.checkpoints import checkpoint_path
from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.knobs import describe_change, validate_knobs


class EngineCallback(StepCommands, TrainerCallback):
    """`step`/`memory` events after every optimizer step; commands at that boundary (engine/train/commands.py).

    `health` (a rundir.health.HealthMonitor) sees every step and reward-failure event; `config_path` receives
    live knobs so a resume continues with them; `learning_rate`, given on resume, wins over the checkpoint's;
    `bound` gives each step event its generation bandwidth bound.
    """

    def __init__(
        self,
        events: EventWriter,
        watcher: CommandWatcher,
        recorder: RolloutRecorder | None,
        rewards: list[TrlReward],
        probe: MemoryProbe | None,
        max_steps: int,
        save_final: bool,
        *,
        trainer: RecordingGRPOTrainer | None = None,
        health: Any = None,
        config_path: Path | None = None,
        learning_rate: float | None = None,
        bound: GenerationBound | None = None,
    ) -> None:
        self.events, self.watcher = events, watcher
        self.recorder, self.rewards, self.probe = recorder, rewards, probe
        self.max_steps, self.save_final = max_steps, save_final
        self.trainer = trainer
        self.health, self.config_path, self.bound = health, config_path, bound
        self.t_start = time.time()
        self.t_last = time.time()
        self.last_tokens: float | None = None
        self.step_times: list[float] = []
        self.save_reasons: list[tuple[str, str | None]] = []  # (reason, command id)
        self.stop_requested = False
        self.switch_to: str | None = None  # preset to continue under, after the switch checkpoint
        self.last_saved_step = -1
        self.learning_rate = learning_rate
        self._waiting_sets: set[str | None] = set()  # `set` commands held until the generation buffer runs out

    # --------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, **kwargs):
        self.t_start = self.t_last = time.time()
        if self.learning_rate is not None and self.trainer is not None and self.trainer.lr_scheduler is not None:
            set_base_learning_rate(self.trainer.lr_scheduler, self.learning_rate)
        if self.trainer is not None:
            self.watcher.accept_set(self.check_set)  # live knobs from now on: the trainer they change exists
        self.events.state("running", step=state.global_step)
        self._emit_memory(state.global_step)
        self._pause_before_first_step(state, control)

    def _pause_before_first_step(self, state, control) -> None:
        """A pause already waiting when training begins (a run switched presets while paused) holds here, before
        the first step, instead of one step later. One process only: ranks must see the same commands."""
        w = self.watcher
        if w is None or distributed.world_size() > 1:
            return
        w.poll()
        if any(c.get("command") == "pause" for c in list(w.queue.queue)):
            self._handle_commands(state, control)

    def _emit_memory(self, step: int) -> None:
        """Rank 0's sample at the top level (what single-GPU readers use) plus one per rank."""
        samples = distributed.gather(self.probe.sample())  # every rank takes part
        if samples:
            extra = {"ranks": samples} if len(samples) > 1 else {}
            self.events.emit("memory", step=step, **samples[0], **extra)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:  # the end-of-training summary log
            return control
        now = time.time()
        step_time = now - self.t_last
        self.t_last = now
        self.step_times.append(step_time)
        tokens = logs.get("num_tokens")
        tps = None
        if tokens is not None:
            tps = (
                (tokens - self.last_tokens) / step_time
                if self.last_tokens is not None and step_time > 0
                else (tokens / step_time if step_time > 0 else None)
            )
            self.last_tokens = tokens
        timer = getattr(self.trainer, "phase_timer", None)
        phase_s, gen_tps = timer.snapshot() if timer is not None else (None, None)
        gen_bound = self.bound.tokens_per_s(timer.step_generation) if self.bound and timer is not None else None
        recent = self.step_times[-10:]
        eta = (self.max_steps - state.global_step) * (sum(recent) / len(recent))
        metrics = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in logs.items()}
        for r in self.rewards:
            for f in r.guarded.drain_failures():
                failure = self.events.emit(
                    "reward_failure",
                    step=state.global_step,
                    reward=f["name"],
                    kind=f["kind"],
                    kinds=f.get("kinds"),
                    count=f["count"],
                    example=f["example"],
                )
                self._check_health(failure)
        step_ev = self.events.emit(
            "step",
            step=state.global_step,
            max_steps=self.max_steps,
            epoch=state.epoch,
            metrics=metrics,
            step_time_s=round(step_time, 4),
            tokens_per_s=round(tps, 2) if tps is not None and math.isfinite(tps) else None,
            phase_s=phase_s,
            generation_tokens_per_s=gen_tps,
            generation_bound_tokens_per_s=gen_bound,
            elapsed_s=round(now - self.t_start, 3),
            eta_s=round(eta, 1),
            correct_frac=self.recorder.correct_frac(state.global_step) if self.recorder else None,
        )
        self._check_health(step_ev)
        self._emit_memory(state.global_step)
        if distributed.is_main():
            print(
                f"step {state.global_step}/{self.max_steps} reward={metrics.get('reward')} "
                f"zero_std={metrics.get('frac_reward_zero_std')} {step_time:.2f}s",
                flush=True,
            )
        self._handle_commands(state, control)
        at_end = state.global_step >= self.max_steps
        if at_end and self.save_final:
            control.should_save = True
        if control.should_save and not self.save_reasons:
            # transformers' flow callback also asks for a save at the last step when saving on a schedule
            self.save_reasons.append(("final" if at_end else "schedule", None))
        return control

    def on_save(self, args, state, control, **kwargs):
        path = checkpoint_path(Path(args.output_dir), state.global_step)
        self.last_saved_step = state.global_step
        reasons = self.save_reasons or [("schedule", None)]
        self.events.emit("checkpoint", step=state.global_step, path=str(path), reason=reasons[0][0])
        for reason, cid in reasons:
            if cid and reason == "switch":
                self.events.emit(
                    "command",
                    id=cid,
                    command="switch_preset",
                    status="done",
                    detail=f"checkpoint {path}; continuing under preset {self.switch_to}",
                )
            elif cid:
                self.events.emit("command", id=cid, command="checkpoint", status="done", detail=str(path))
        if not self.stop_requested and state.global_step < self.max_steps and not self.watcher.paused.is_set():
            self.events.state("running", step=state.global_step)
        self.save_reasons = []
        return control

    # ------------------------------------------------------------- commands
    def command_stop(self, state, control, cid: str | None) -> None:
        self.stop_requested = True
        control.should_training_stop = True
        control.should_save = True
        self.save_reasons.insert(0, ("stop", None))
        if cid:
            self.events.emit("command", id=cid, command="stop", status="done")

    def command_switch(self, state, control, cmd: dict) -> None:
        """Checkpoint, stop this trainer, and let run.py continue the run under the new preset."""
        self.switch_to = str(cmd["args"]["preset"])
        self.stop_requested = True
        w = self.watcher
        if w is not None and w.paused.is_set() and distributed.is_main():
            # A paused run stays paused under the new preset: take no more commands here, and leave a pause in
            # control/ for the engine that continues the run (it acts on it before its first step).
            w.stop()
            if w.is_alive() and w is not threading.current_thread():
                w.join(timeout=2.0)
            send_command(w.control_dir, "pause")
        control.should_training_stop = True
        control.should_save = True
        self.save_reasons.insert(0, ("switch", cmd.get("id")))

    def command_checkpoint(self, state, control, cid: str | None, paused: bool) -> None:
        self.save_reasons.append(("command", cid))
        if paused:
            self._save_now(state)
        else:
            control.should_save = True

    def before_pause(self, state, control) -> None:
        if control.should_save and self.trainer is not None:
            self._save_now(state)  # a checkpoint asked for with the pause happens before pausing
            control.should_save = False

    def pause_began(self) -> None:
        timer = getattr(self.trainer, "phase_timer", None)
        if timer is not None:
            timer.enter(EXCLUDED)

    def pause_ended(self) -> None:
        timer = getattr(self.trainer, "phase_timer", None)
        if timer is not None:
            timer.exit(EXCLUDED)

    def after_commands(self, state) -> None:
        if self.stop_requested and not self.switch_to:
            self.events.state("stopping", step=state.global_step)

    def exclude(self, seconds: float) -> None:
        """Leave seconds that just passed (an in-run eval) out of the step time and its phases."""
        self.t_last += seconds
        timer = getattr(self.trainer, "phase_timer", None)
        if timer is not None:
            timer.discard(seconds)

    # ------------------------------------------------------ health, live knobs
    def _check_health(self, ev: dict) -> None:
        """Feed an event to the health rules; write each rule that starts or stops firing."""
        if self.health is None or not ev:
            return
        for h in self.health.add(ev):
            self.events.emit("health", **h)

    def _names(self) -> list[str]:
        return [r.__name__ for r in self.rewards]

    def check_set(self, args: dict) -> dict:
        """Validate a `set` command's args (watcher thread); returns the cleaned values or raises KnobError."""
        values = validate_knobs(args, self._names())
        check_knobs(self.trainer, values, self._names())
        return values

    def command_set(self, state, cmd: dict) -> bool:
        values, cid = cmd.get("args") or {}, cmd.get("id")
        wait = wait_reason(self.trainer, values)
        if wait:  # held for a later boundary; said once, so the user knows why nothing changed yet
            if cid not in self._waiting_sets:
                self._waiting_sets.add(cid)
                self.events.emit("command", id=cid, command="set", status="accepted", detail=wait)
            return False
        self._waiting_sets.discard(cid)
        try:
            previous = apply_knobs(self.trainer, values, self._names(), self.recorder)
            if self.config_path is not None and distributed.is_main():
                save_knobs(self.config_path, values, self._names())
        except Exception as e:  # noqa: BLE001 - a knob that can't apply is refused, training goes on
            self.events.emit("command", id=cid, command="set", status="rejected", detail=f"{type(e).__name__}: {e}")
            return True
        self.events.emit(
            "knobs", step=state.global_step, id=cid, values=values, previous={k: previous[k] for k in values}
        )
        self.events.emit(
            "command",
            id=cid,
            command="set",
            status="done",
            detail=f"{describe_change(values, previous)} from step {state.global_step + 1}",
        )
        return True

    def _save_now(self, state) -> None:
        self.events.state("checkpointing", step=state.global_step)
        self.trainer.save_checkpoint_now()
        self.on_save(self.trainer.args, state, self.trainer.control)
