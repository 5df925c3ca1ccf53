"""GRPO training on TRL, writing the run directory as it goes.

The training loop is TRL's GRPOTrainer. Two small additions make it
observable and steerable:

- RecordingGRPOTrainer hooks the two places where a generation batch is
  complete: `_calculate_rewards` (raw reward per function) and
  `_generate_and_score_completions` (advantages, token ids), and writes every
  group to rollouts.jsonl.
- EngineCallback writes a `step` and `memory` event after every optimizer
  step and acts on commands (pause, resume, checkpoint, stop) at that step
  boundary. A watcher thread acknowledges commands as soon as they arrive so a
  UI can show "pausing" while the step finishes.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from engine import distributed
from engine.config import Config
from rundir.control import take_commands
from rundir.events import EventWriter
from engine.rewards import GuardedReward, extract_answer, is_correct, resolve_reward
from rundir.rollouts import RolloutWriter
from rundir.layout import RunDir
from engine.train.telemetry import MemoryProbe

REWARD_TIMEOUT_S = 5.0  # per completion, for user reward functions


def _text(x: Any) -> str:
    """TRL hands conversational prompts/completions as message lists; rewards take plain text."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x:
        users = [m for m in x if isinstance(m, dict) and m.get("role") == "user"]
        last = (users or x)[-1]
        return last.get("content", "") if isinstance(last, dict) else str(last)
    return ""


class TrlReward:
    """Adapts a library reward (plain text in) to TRL's call (messages in), guarded against failure."""

    def __init__(self, name: str, fn: Callable, prompt_format: str) -> None:
        self.__name__ = name
        self.guarded = GuardedReward(fn, name, timeout_s=REWARD_TIMEOUT_S)
        self.prompt_format = prompt_format

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        answer = kwargs.pop("answer", None)
        return self.guarded([_text(p) for p in prompts], [_text(c) for c in completions], answer,
                            prompt_format=self.prompt_format, **kwargs)


def build_rewards(cfg: Config) -> tuple[list[TrlReward], list[float]]:
    """Resolve every reward of the preset; raises RewardSpecError before anything runs."""
    options = cfg.reward_options()
    funcs, weights = [], []
    for name, weight in cfg.reward_weights().items():
        fn = resolve_reward(name, options[name] or None, cfg.base_dir)
        label = name.rsplit(":", 1)[-1] if ":" in name else name
        funcs.append(TrlReward(label, fn, cfg.prompt.format))
        weights.append(weight)
    return funcs, weights


def grpo_args(cfg: Config, output_dir: Path, device: str, max_steps: int | None = None) -> GRPOConfig:
    """TRL's config from ours. Reward weights come in the preset's order, the order build_rewards returns."""
    t = cfg.train
    bf16 = t.bf16 if t.bf16 is not None else (device == "cuda" and torch.cuda.is_bf16_supported())
    return GRPOConfig(
        output_dir=str(output_dir),
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=t.optim,
        adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2,
        num_generations=t.num_generations, per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, steps_per_generation=t.steps_per_generation,
        reward_weights=list(cfg.reward_weights().values()),
        max_completion_length=t.max_completion_length, temperature=t.temperature, top_p=t.top_p,
        top_k=t.top_k, repetition_penalty=t.repetition_penalty, beta=t.beta, loss_type=t.loss_type,
        scale_rewards=t.scale_rewards, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
        num_iterations=t.num_iterations, mask_truncated_completions=t.mask_truncated_completions,
        max_steps=max_steps or t.max_steps, bf16=bf16, seed=t.seed, data_seed=t.seed,
        # Always explicit: TRL 1.16 turns gradient checkpointing on by default.
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        **vllm_args(cfg),
        # Events are the progress report: log every step, no tqdm bars in engine.log, no wandb.
        logging_steps=1, report_to="none", disable_tqdm=True,
        save_strategy="steps" if t.save_steps > 0 else "no", save_steps=max(t.save_steps, 1),
        save_total_limit=t.save_total_limit,
        use_cpu=device == "cpu",
    )


def vllm_args(cfg: Config) -> dict[str, Any]:
    """The vLLM part of GRPOConfig: colocate knobs from [train], the server's address from [distributed]."""
    t, d = cfg.train, cfg.distributed
    return dict(use_vllm=t.use_vllm, vllm_mode=t.vllm_mode,
                vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization,
                vllm_enable_sleep_mode=t.vllm_enable_sleep_mode, vllm_max_model_length=t.vllm_max_model_length,
                vllm_tensor_parallel_size=t.vllm_tensor_parallel_size,
                # TRL's own default host, 0.0.0.0, reaches a `trl vllm-serve` on this machine
                vllm_server_host=d.vllm_server_host or "0.0.0.0", vllm_server_port=d.vllm_server_port,
                vllm_group_port=d.vllm_group_port, vllm_server_timeout=d.vllm_server_timeout)


class RecordingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that hands every scored generation batch to a recorder."""

    recorder: "RolloutRecorder | None" = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_scored = (inputs, completions, completion_ids_list, rewards)
        return rewards

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.recorder is None and distributed.world_size() == 1:
            return out
        scored_inputs, completions, completion_ids, rewards = self._last_scored
        advantages = out["advantages"].detach().float().cpu()
        # rewards are already gathered over processes (in rank order); gather the rest the same way so
        # rank 0 records the whole generation batch and groups split across ranks stay whole.
        parts = distributed.gather(([{k: x.get(k) for k in ("question", "answer", "prompt")} for x in scored_inputs],
                                    completions, completion_ids, advantages))
        if self.recorder is not None and parts:
            self.recorder.record(
                step=self.state.global_step + 1, inputs=[x for p in parts for x in p[0]],
                completions=[c for p in parts for c in p[1]], completion_ids=[c for p in parts for c in p[2]],
                rewards=rewards.detach().float().cpu(), advantages=torch.cat([p[3] for p in parts]),
                eos_ids=set(self.eos_token_ids) | {self._tokenizer.pad_token_id})
        return out


class RolloutRecorder:
    """Turns a scored generation batch into group records in rollouts.jsonl.

    Judging answers (is_correct may ask the math-verify worker, ~10 ms for an
    unusual answer) and writing happen on a background thread, so a GPU step
    never waits on them; the step event waits only for its own step's groups.
    """

    def __init__(self, writer: RolloutWriter, reward_names: list[str], weights: list[float],
                 num_generations: int, prompt_format: str, max_completion_length: int) -> None:
        self.writer = writer
        self.names = reward_names
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.G = num_generations
        self.fmt = prompt_format
        self.max_len = max_completion_length
        self.step_correct: dict[int, list[bool]] = {}
        self._group_counter: dict[int, int] = {}
        self._queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rollout-recorder", daemon=True)
        self._thread.start()

    def record(self, step: int, inputs: list[dict], completions: list, completion_ids: list[list[int]],
               rewards: torch.Tensor, advantages: torch.Tensor, eos_ids: set[int]) -> None:
        """Queue a scored batch (CPU tensors, plain lists); returns at once."""
        self._queue.put((step, inputs, completions, completion_ids, rewards, advantages, eos_ids))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(*item)
            except BaseException as e:  # noqa: BLE001 - reported by wait(); training must not die here
                self.error = e
            finally:
                self._queue.task_done()

    def _write(self, step: int, inputs: list[dict], completions: list, completion_ids: list[list[int]],
               rewards: torch.Tensor, advantages: torch.Tensor, eos_ids: set[int]) -> None:
        totals = torch.nan_to_num(rewards * self.weights.unsqueeze(0), nan=0.0).sum(dim=1)
        correct_list = self.step_correct.setdefault(step, [])
        for start in range(0, len(inputs), self.G):
            rows = []
            for i in range(start, min(start + self.G, len(inputs))):
                text = _text(completions[i])
                extracted = extract_answer(text, self.fmt)
                correct = bool(is_correct(extracted, inputs[i].get("answer")))
                correct_list.append(correct)
                ids = completion_ids[i]
                rows.append({
                    "text": text, "extracted": extracted, "correct": correct,
                    "rewards": {n: float(rewards[i, j]) for j, n in enumerate(self.names)},
                    "total": float(totals[i]), "advantage": float(advantages[i]),
                    "tokens": len(ids),
                    "truncated": bool(len(ids) >= self.max_len and (not ids or ids[-1] not in eos_ids)),
                })
            group = self._group_counter.get(step, 0)
            self._group_counter[step] = group + 1
            first = inputs[start]
            self.writer.write_group(step, group, first.get("question") or _text(first.get("prompt")),
                                    str(first.get("answer", "")), rows)
        for old in [k for k in self._group_counter if k < step - 1]:
            del self._group_counter[old]
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
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.writer.close()


class CommandWatcher(threading.Thread):
    """Polls control/ every 0.2 s, acknowledges at once, queues for the step boundary."""

    def __init__(self, control_dir: Path, events: EventWriter, lock: threading.Lock,
                 check_switch: Callable[[str], str | None] | None = None) -> None:
        super().__init__(name="command-watcher", daemon=True)
        self.control_dir, self.events, self.lock = control_dir, events, lock
        # check_switch(preset) -> None if the run can continue under that preset, else why not
        self.check_switch = check_switch or (lambda preset: "switching presets is not available here")
        self.queue: queue.Queue[dict] = queue.Queue()
        self._stop = threading.Event()
        self.paused = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.2):
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
        with self.lock:
            if why_not:
                self.events.emit("command", id=cmd.get("id"), command=name, status="rejected", detail=why_not)
                return
            self.events.emit("command", id=cmd.get("id"), command=name, status="accepted")
            pending = {"pause": "pausing", "checkpoint": "checkpointing", "stop": "stopping",
                       "switch_preset": "checkpointing"}.get(name)
            if pending and not (name == "pause" and self.paused.is_set()):
                self.events.state(pending)
        self.queue.put(cmd)

    def requeue(self, cmds: list[dict]) -> None:
        """Put commands back at the front of the queue, ahead of anything that arrived since."""
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
        self._stop.set()


class EngineCallback(TrainerCallback):
    def __init__(self, events: EventWriter, lock: threading.Lock, watcher: CommandWatcher,
                 recorder: RolloutRecorder, rewards: list[TrlReward], probe: MemoryProbe,
                 max_steps: int, save_final: bool) -> None:
        self.events, self.lock, self.watcher = events, lock, watcher
        self.recorder, self.rewards, self.probe = recorder, rewards, probe
        self.max_steps, self.save_final = max_steps, save_final
        self.trainer: RecordingGRPOTrainer | None = None
        self.t_start = time.time()
        self.t_last = time.time()
        self.last_tokens: float | None = None
        self.step_times: list[float] = []
        self.save_reasons: list[tuple[str, str | None]] = []  # (reason, command id)
        self.stop_requested = False
        self.switch_to: str | None = None  # preset to continue under, after the switch checkpoint
        self.last_saved_step = -1
        self.learning_rate: float | None = None  # set on resume: the config's LR wins over the checkpoint's

    # --------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, **kwargs):
        self.t_start = self.t_last = time.time()
        if self.learning_rate is not None and self.trainer is not None and self.trainer.lr_scheduler is not None:
            set_base_learning_rate(self.trainer.lr_scheduler, self.learning_rate)
        with self.lock:
            self.events.state("running", step=state.global_step)
        self._emit_memory(state.global_step)

    def _emit_memory(self, step: int) -> None:
        """Rank 0's sample at the top level (what single-GPU readers use) plus one per rank."""
        samples = distributed.gather(self.probe.sample())  # every rank takes part
        if samples:
            extra = {"ranks": samples} if len(samples) > 1 else {}
            with self.lock:
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
            tps = (tokens - self.last_tokens) / step_time if self.last_tokens is not None and step_time > 0 else (
                tokens / step_time if step_time > 0 else None)
            self.last_tokens = tokens
        recent = self.step_times[-10:]
        eta = (self.max_steps - state.global_step) * (sum(recent) / len(recent))
        metrics = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in logs.items()}
        with self.lock:
            for r in self.rewards:
                for f in r.guarded.drain_failures():
                    self.events.emit("reward_failure", step=state.global_step, reward=f["name"], kind=f["kind"],
                                     kinds=f.get("kinds"), count=f["count"], example=f["example"])
            self.events.emit("step", step=state.global_step, max_steps=self.max_steps,
                             epoch=state.epoch, metrics=metrics, step_time_s=round(step_time, 4),
                             tokens_per_s=round(tps, 2) if tps is not None and math.isfinite(tps) else None,
                             elapsed_s=round(now - self.t_start, 3), eta_s=round(eta, 1),
                             correct_frac=self.recorder.correct_frac(state.global_step) if self.recorder else None)
        self._emit_memory(state.global_step)
        if distributed.is_main():
            print(f"step {state.global_step}/{self.max_steps} reward={metrics.get('reward')} "
                  f"zero_std={metrics.get('frac_reward_zero_std')} {step_time:.2f}s", flush=True)
        self._handle_commands(state, control)
        at_end = state.global_step >= self.max_steps
        if at_end and self.save_final:
            control.should_save = True
        if control.should_save and not self.save_reasons:
            # transformers' flow callback also asks for a save at the last step when saving on a schedule
            self.save_reasons.append(("final" if at_end else "schedule", None))
        return control

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.last_saved_step = state.global_step
        with self.lock:
            reasons = self.save_reasons or [("schedule", None)]
            self.events.emit("checkpoint", step=state.global_step, path=str(path), reason=reasons[0][0])
            for reason, cid in reasons:
                if cid and reason == "switch":
                    self.events.emit("command", id=cid, command="switch_preset", status="done",
                                     detail=f"checkpoint {path}; continuing under preset {self.switch_to}")
                elif cid:
                    self.events.emit("command", id=cid, command="checkpoint", status="done", detail=str(path))
            if not self.stop_requested and state.global_step < self.max_steps and not self.watcher.paused.is_set():
                self.events.state("running", step=state.global_step)
        self.save_reasons = []
        return control

    # ------------------------------------------------------------- commands
    def request_stop(self, control, cid: str | None) -> None:
        self.stop_requested = True
        control.should_training_stop = True
        control.should_save = True
        self.save_reasons.insert(0, ("stop", None))
        if cid:
            with self.lock:
                self.events.emit("command", id=cid, command="stop", status="done")

    def request_switch(self, control, cmd: dict) -> None:
        """Checkpoint, stop this trainer, and let run.py continue the run under the new preset."""
        self.switch_to = str(cmd["args"]["preset"])
        self.stop_requested = True
        control.should_training_stop = True
        control.should_save = True
        self.save_reasons.insert(0, ("switch", cmd.get("id")))

    def _commands(self) -> list[dict]:
        """Rank 0 reads the queue; every rank gets the same list (the ranks stay in step)."""
        return distributed.broadcast(self.watcher.drain() if distributed.is_main() else None)

    def _handle_commands(self, state, control) -> None:
        cmds = self._commands()
        for i, cmd in enumerate(cmds):
            name, cid = cmd.get("command"), cmd.get("id")
            if name == "switch_preset":
                self.request_switch(control, cmd)
            elif name == "checkpoint":
                control.should_save = True
                self.save_reasons.append(("command", cid))
            elif name == "stop":
                self.request_stop(control, cid)
            elif name == "pause" and self.stop_requested:
                with self.lock:
                    self.events.emit("command", id=cid, command="pause", status="rejected",
                                     detail="the run is stopping")
            elif name == "pause":
                # commands that arrived after the pause in the same batch (a quick resume or stop)
                # are the first ones the pause acts on
                self._pause(state, control, cid, pending=cmds[i + 1:])
                break
            elif name == "resume":
                with self.lock:
                    self.events.emit("command", id=cid, command="resume", status="rejected", detail="not paused")
        if self.stop_requested and not self.switch_to:
            with self.lock:
                self.events.state("stopping", step=state.global_step)

    def _pause(self, state, control, cid: str | None, pending: list[dict] = ()) -> None:
        """Block at the step boundary; the model and optimizer stay in memory so resuming is instant."""
        if control.should_save and self.trainer is not None:
            self._save_now(state)  # a checkpoint asked for with the pause happens before pausing
            control.should_save = False
        self.watcher.paused.set()
        with self.lock:
            self.events.state("paused", step=state.global_step)
            self.events.emit("command", id=cid, command="pause", status="done")
        paused_at = time.time()
        cmds = list(pending)
        while True:
            if not cmds:
                if distributed.is_main():
                    time.sleep(0.1)
                cmds = self._commands()
            if not cmds:
                continue
            done = False
            for j, cmd in enumerate(cmds):
                if done:
                    # what came after the resume/stop in the same batch is handled at the next boundary
                    if distributed.is_main():
                        self.watcher.requeue(cmds[j:])
                    break
                name, ccid = cmd.get("command"), cmd.get("id")
                if name == "resume":
                    with self.lock:
                        self.events.emit("command", id=ccid, command="resume", status="done")
                    done = True
                elif name == "checkpoint":
                    self.save_reasons.append(("command", ccid))
                    self._save_now(state)
                    with self.lock:
                        self.events.state("paused", step=state.global_step)
                elif name == "stop":
                    self.request_stop(control, ccid)
                    done = True
                elif name == "switch_preset":
                    self.request_switch(control, cmd)
                    done = True
                elif name == "pause":
                    with self.lock:
                        self.events.emit("command", id=ccid, command="pause", status="done", detail="already paused")
            cmds = []
            if done:
                break
        self.watcher.paused.clear()
        self.t_last += time.time() - paused_at  # paused time is not step time
        if not self.stop_requested:
            with self.lock:
                self.events.state("running", step=state.global_step)

    def _save_now(self, state) -> None:
        with self.lock:
            self.events.state("checkpointing", step=state.global_step)
        self.trainer._save_checkpoint(self.trainer.model, None)
        self.on_save(self.trainer.args, state, self.trainer.control)


def set_base_learning_rate(scheduler: Any, lr: float) -> None:
    """Make a resumed schedule use `lr` as its peak.

    Loading a checkpoint restores the scheduler's base_lrs from the old run, so
    a resumed run (or one switched to another preset) would silently keep the
    old learning rate. The schedule's shape and position are kept.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    if not hasattr(inner, "base_lrs"):
        return
    inner.base_lrs = [lr for _ in inner.base_lrs]
    lambdas = getattr(inner, "lr_lambdas", None)  # transformers' schedules are all LambdaLR
    current = [lr * f(inner.last_epoch) for f in lambdas] if lambdas else inner.get_lr()
    for group, new in zip(inner.optimizer.param_groups, current):
        group["initial_lr"] = lr
        group["lr"] = new
    inner._last_lr = [g["lr"] for g in inner.optimizer.param_groups]
