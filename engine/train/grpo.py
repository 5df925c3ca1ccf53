"""GRPO training on TRL, writing the run directory as it goes.

The training loop is TRL's GRPOTrainer. Two small additions make it
observable and steerable:

- RecordingGRPOTrainer records every scored generation batch (raw reward per
  function, advantages, token ids) as groups in rollouts.jsonl, through the
  hooks of engine/train/trl_hooks.py (the one home of TRL's private methods),
  with each token's log-probability and entropy from the loss's forward pass.
- EngineCallback writes a `step` and `memory` event after every optimizer
  step and acts on commands (pause, resume, checkpoint, stop, switch) at that
  step boundary, with the state machine of engine/train/commands.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from trl import GRPOConfig

from grpo_tui.engine import distributed
from grpo_tui.engine.config import Config
from grpo_tui.engine.rewards import extract_answer, is_correct
from grpo_tui.engine.rewards.chat_format import message_text
from grpo_tui.engine.rewards.trl_call import TrlReward
from grpo_tui.engine.train.apply_knobs import apply_knobs, check_knobs, save_knobs, set_base_learning_rate, wait_reason
from grpo_tui.engine.train.commands import CommandWatcher, StepCommands
from grpo_tui.engine.train.generation_bound import GenerationBound
from grpo_tui.engine.train.phase_timer import EXCLUDED
from grpo_tui.engine.train.telemetry import MemoryProbe
from grpo_tui.engine.train.token_stats import split_rows, token_chars
from grpo_tui.engine.train.trl_hooks import HookedGRPOTrainer, ScoredBatch
from grpo_tui.rundir.checkpoints import checkpoint_path
from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.events import EventWriter
from grpo_tui.rundir.knobs import describe_change, validate_knobs
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import CompletionRecord, GroupRecord, RolloutWriter


def tracker_settings(cfg: Config, run_root: Path) -> dict[str, Any]:
    """report_to, run_name and project for TRL, with the trackers' files kept inside the run directory.

    Trackers get TRL's logs (and W&B its completion tables) beside events.jsonl, which stays the record the
    UIs read. The environment variables are defaults: a user's own WANDB_DIR or TENSORBOARD_LOGGING_DIR wins.
    """
    t = cfg.train
    report_to = [t.report_to] if isinstance(t.report_to, str) else list(t.report_to)
    if report_to and report_to != ["none"]:
        trackers = RunDir(run_root).trackers
        trackers.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(trackers / "tensorboard"))
        os.environ.setdefault("WANDB_DIR", str(trackers))
        os.environ.setdefault("WANDB_PROJECT", t.project or "grpo-tui")
    return {
        "report_to": report_to,
        "run_name": t.run_name or Path(run_root).resolve().name,
        "project": t.project or "grpo-tui",
    }


def grpo_args(cfg: Config, output_dir: Path, device: str, max_steps: int | None = None) -> GRPOConfig:
    """TRL's config from ours. Reward weights come in the preset's order, the order build_rewards returns.

    Every [train] field named like a GRPOConfig field passes straight through, then the few the engine owns
    (engine.config.ENGINE_OWNED), then the TRL fields the preset wrote directly (trl_extra).
    """
    t = cfg.train
    bf16 = t.bf16 if t.bf16 is not None else (device == "cuda" and torch.cuda.is_bf16_supported())
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    kwargs = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name in known}
    kwargs.update(
        output_dir=str(output_dir),
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        reward_weights=list(cfg.reward_weights().values()),
        max_steps=max_steps or t.max_steps,
        bf16=bf16,
        data_seed=t.seed,
        # Always explicit: TRL 1.16 turns gradient checkpointing on by default.
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        **vllm_server_args(cfg),
        # Events are the progress report: log every step, no tqdm bars in engine.log.
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="steps" if t.save_steps > 0 else "no",
        save_steps=max(t.save_steps, 1),
        use_cpu=device == "cpu",
        **tracker_settings(cfg, Path(output_dir).parent),
    )
    if cfg.data.balance_by:  # the loader's rounds are the order; TRL's sampler would reshuffle them
        kwargs["shuffle_dataset"] = False
    kwargs.update(t.trl_extra)
    return GRPOConfig(**kwargs)


def vllm_server_args(cfg: Config) -> dict[str, Any]:
    """Server mode's address, from [distributed]; the colocate knobs pass through from [train] by name."""
    d = cfg.distributed
    # TRL's own default host, 0.0.0.0, reaches a `trl vllm-serve` on this machine
    return dict(
        vllm_server_host=d.vllm_server_host or "0.0.0.0",
        vllm_server_port=d.vllm_server_port,
        vllm_group_port=d.vllm_group_port,
        vllm_server_timeout=d.vllm_server_timeout,
    )


class RecordingGRPOTrainer(HookedGRPOTrainer):
    """GRPOTrainer that hands every scored generation batch to a recorder (and times its phases)."""

    def __init__(self, *args: Any, recorder: RolloutRecorder | None = None, **kwargs: Any) -> None:
        self.recorder = recorder  # None on ranks other than 0: they gather, rank 0 records
        super().__init__(*args, **kwargs)

    def generate_batch(self, inputs):
        if self.recorder is None and distributed.world_size() == 1:
            return super().generate_batch(inputs)
        s = self.score_batch(inputs)
        with self.phase("recording"):
            self._record(s)
        return s.out

    def _record(self, s: ScoredBatch) -> None:
        advantages = s.out["advantages"].detach().float().cpu()
        # rewards are already gathered over processes (in rank order); gather the rest the same way so
        # rank 0 records the whole generation batch and groups split across ranks stay whole.
        parts = distributed.gather(
            (
                [{k: x.get(k) for k in ("question", "answer", "prompt")} for x in s.inputs],
                s.completions,
                s.completion_ids,
                advantages,
            )
        )
        if self.recorder is not None and parts:
            self.recorder.record(
                step=self.state.global_step + 1,
                inputs=[x for p in parts for x in p[0]],
                completions=[c for p in parts for c in p[1]],
                completion_ids=[c for p in parts for c in p[2]],
                rewards=s.rewards,
                advantages=torch.cat([p[3] for p in parts]),
                eos_ids=self.end_token_ids(),
                # the loss sees this process's rows only; with several, the others' would never arrive
                token_stats=len(parts) == 1 and self.model.training,
            )

    def wants_token_stats(self) -> bool:
        return self.recorder is not None and self.recorder.expects_token_stats()

    def on_token_stats(self, rows: torch.Tensor, logps: torch.Tensor, entropies: torch.Tensor) -> None:
        if self.recorder is not None:
            self.recorder.add_token_stats(rows, logps, entropies)


@dataclass
class _Batch:
    """A scored generation batch on its way to rollouts.jsonl: judged first, written once its rows' per-token
    statistics have arrived from the loss (or the next batch comes)."""

    step: int
    inputs: list[dict]
    completions: list
    completion_ids: list[list[int]]
    rewards: torch.Tensor
    advantages: torch.Tensor
    eos_ids: set[int]
    token_stats: bool
    waiting: int = 0  # rows whose statistics have not arrived
    stats: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (rows, (2, rows, width))
    groups: list[GroupRecord] = field(default_factory=list)  # set by the recording thread


class RolloutRecorder:
    """Turns a scored generation batch into group records in rollouts.jsonl.

    Judging answers (is_correct may ask the math-verify worker, ~10 ms for an
    unusual answer) and writing happen on a background thread, so a GPU step
    never waits on them; the step event waits only for its own step's judging.

    With `token_stats`, a batch's groups are written once the loss has scored
    all its rows (`add_token_stats`), with each token's id, piece of the text,
    log-probability and entropy; a batch whose rows never all arrive is written
    with those it has when the next batch is recorded, or at `close`.
    """

    def __init__(
        self,
        writer: RolloutWriter,
        reward_names: list[str],
        weights: list[float],
        num_generations: int,
        prompt_format: str,
        max_completion_length: int,
        tokenizer: Any = None,
        token_stats: bool = True,
    ) -> None:
        self.writer = writer
        self.names = reward_names
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.G = num_generations
        self.fmt = prompt_format
        self.max_len = max_completion_length
        self.tokenizer = tokenizer  # for each token's piece of the text; None: no pieces
        self.token_stats = token_stats
        self._pending: _Batch | None = None  # the batch whose rows the loss is scoring (training thread only)
        self.step_correct: dict[int, list[bool]] = {}
        self._group_counter: dict[int, int] = {}
        self._queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rollout-recorder", daemon=True)
        self._thread.start()

    def record(
        self,
        step: int,
        inputs: list[dict],
        completions: list,
        completion_ids: list[list[int]],
        rewards: torch.Tensor,
        advantages: torch.Tensor,
        eos_ids: set[int],
        token_stats: bool = True,
    ) -> None:
        """Queue a scored batch (CPU tensors, plain lists); returns at once. With token_stats, its groups wait
        for `add_token_stats` (rows in this order)."""
        self._release()
        batch = _Batch(
            step,
            inputs,
            completions,
            completion_ids,
            rewards,
            advantages,
            eos_ids,
            token_stats=token_stats and self.token_stats,
            waiting=len(inputs),
        )
        self._queue.put(("judge", batch))
        if batch.token_stats:
            self._pending = batch
        else:
            self._queue.put(("write", batch))

    def expects_token_stats(self) -> bool:
        """Whether the batch recorded last is waiting for its rows' per-token statistics."""
        return self._pending is not None

    def add_token_stats(self, rows: torch.Tensor, logps: torch.Tensor, entropies: torch.Tensor) -> None:
        """Rows (indices into the last recorded batch) and their (rows, width) log-probabilities and entropies.

        Called inside the loss: only a detached float16 copy is kept, on the device, with no sync; the
        recording thread moves it to the CPU. Rows seen again (num_iterations > 1) are ignored."""
        batch = self._pending
        if batch is None:
            return
        batch.stats.append((rows.detach(), torch.stack([logps.detach(), entropies.detach()]).to(torch.float16)))
        batch.waiting -= rows.numel()
        if batch.waiting <= 0:
            self._release()

    def _release(self) -> None:
        batch, self._pending = self._pending, None
        if batch is not None:
            self._queue.put(("write", batch))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, batch = item
                if kind == "judge":
                    self._judge(batch)
                else:
                    self._write(batch)
            except BaseException as e:  # noqa: BLE001 - reported by wait(); training must not die here
                self.error = e
            finally:
                self._queue.task_done()

    def _judge(self, b: _Batch) -> None:
        step, inputs, completions, completion_ids = b.step, b.inputs, b.completions, b.completion_ids
        rewards, advantages, eos_ids = b.rewards, b.advantages, b.eos_ids
        totals = torch.nan_to_num(rewards * self.weights.unsqueeze(0), nan=0.0).sum(dim=1)
        correct_list = self.step_correct.setdefault(step, [])
        for start in range(0, len(inputs), self.G):
            rows = []
            for i in range(start, min(start + self.G, len(inputs))):
                text = message_text(completions[i])
                extracted = extract_answer(text, self.fmt)
                correct = bool(is_correct(extracted, inputs[i].get("answer")))
                correct_list.append(correct)
                ids = completion_ids[i]
                rows.append(
                    CompletionRecord(
                        text=text,
                        extracted=extracted,
                        correct=correct,
                        rewards={n: float(rewards[i, j]) for j, n in enumerate(self.names)},
                        total=float(totals[i]),
                        advantage=float(advantages[i]),
                        tokens=len(ids),
                        truncated=bool(len(ids) >= self.max_len and (not ids or ids[-1] not in eos_ids)),
                    )
                )
            group = self._group_counter.get(step, 0)
            self._group_counter[step] = group + 1
            first = inputs[start]
            b.groups.append(
                GroupRecord(
                    step=step,
                    group=group,
                    prompt=first.get("question") or message_text(first.get("prompt")),
                    gold=str(first.get("answer", "")),
                    completions=rows,
                )
            )
        for old in [k for k in self._group_counter if k < step - 1]:
            del self._group_counter[old]

    def _write(self, b: _Batch) -> None:
        if b.token_stats:
            rows = [c for g in b.groups for c in g.completions]
            stats: dict[int, tuple] = {}
            lengths = {i: len(ids) for i, ids in enumerate(b.completion_ids)}
            for idx, st in b.stats:
                stats.update(split_rows(idx, st, lengths))
            b.stats = []
            for i, rec in enumerate(rows):
                ids = b.completion_ids[i]
                rec.token_ids = np.asarray(ids, dtype=np.int32)
                rec.token_chars = token_chars(self.tokenizer, ids, rec.text)
                if i in stats:
                    rec.token_logprobs, rec.token_entropies = stats[i]
        for g in b.groups:
            self.writer.write(g)
        self.writer.flush()

    def wait(self) -> None:
        """Block until every queued batch is written; re-raise a recording failure."""
        self._queue.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"recording rollouts failed: {err!r}") from err

    def correct_frac(self, step: int) -> float | None:
        self.wait()
        vals = self.step_correct.pop(step, None)
        return sum(vals) / len(vals) if vals else None

    def close(self) -> None:
        self._release()
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.writer.close()


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
