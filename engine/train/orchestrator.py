"""One training run, start to end: the order of the set-up steps, the run's first and last events.

The steps themselves are in engine/train/build.py; what a failure writes is in engine/failure.py. Every path
out of `train` (finished, stopped, switched, failed) ends the event log with `run_end`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from grpo_tui.engine import distributed
from grpo_tui.engine.config import Config
from grpo_tui.engine.data.loader import load_rows
from grpo_tui.engine.failure import record_failure
from grpo_tui.engine.models import pick_device
from grpo_tui.engine.rewards.trl_call import TrlReward
from grpo_tui.engine.train.batch_shape import prompts_per_batch
from grpo_tui.engine.train.build import (
    build_callbacks,
    build_dataset,
    build_model,
    build_recorder,
    build_trainer,
)
from grpo_tui.engine.train.commands import CommandWatcher
from grpo_tui.engine.train.engine_callback import EngineCallback
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer
from grpo_tui.engine.train.preset_switch import switch_problem
from grpo_tui.engine.train.rewards import build_rewards
from grpo_tui.engine.train.rollout_recorder import RolloutRecorder
from grpo_tui.engine.train.sft import before_grpo
from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.errors import EXIT_OK
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.layout import RunDir

VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "grpo-tui")


def train(
    cfg: Config, run: RunDir, resume: bool, restarted: Path | None = None, data: tuple | None = None
) -> tuple[int, str | None]:
    """One training run: (exit code, the preset a switch_preset command asked to continue under, or None)."""
    t0 = time.time()
    main_rank = distributed.is_main()
    events = EventWriter(run.events) if main_rank else distributed.NullEvents()
    watcher = CommandWatcher(run.control, events, check_switch=lambda p: switch_problem(cfg, p))
    point = ResumePoint.find(run) if resume else ResumePoint()
    device = pick_device(cfg.train.use_cpu)
    rewards, weights = build_rewards(cfg)
    trainer: RecordingGRPOTrainer | None = None
    recorder: RolloutRecorder | None = None
    catch_stop_signals(watcher, main_rank)
    announce_start(events, cfg, run, point, device, rewards, weights, restarted)
    if main_rank:
        watcher.start()
    try:
        rows, report = data or load_rows(cfg.data, cfg.train.seed, min_rows=prompts_per_batch(cfg))
        events.emit("dataset", **report.as_event())
        events.state("loading_model")
        policy = build_model(cfg, run, device, events, report)
        rows = build_dataset(cfg, rows, report, policy.loaded, events)
        if cfg.sft.enabled or cfg.curriculum.prepass:
            rows = before_grpo(cfg, run.root, policy.loaded, rows, events, watcher, device)
            if rows is None:  # a stop command during the SFT stage
                return end_run(events, "stopped", 0, t0)
        recorder = build_recorder(cfg, run, rewards, weights, policy.loaded.tokenizer) if main_rank else None
        trainer = build_trainer(cfg, run, policy, rows, rewards, recorder, events)
        callback = build_callbacks(
            cfg, run, trainer, events, watcher, recorder, rewards, device, point.checkpoint, main_rank
        )
        trainer.train(resume_from_checkpoint=str(point.checkpoint) if point.checkpoint else None)
        watcher.close()  # a command that came too late is answered before run_end, the log's last event
        return finish(cfg, events, trainer, callback, t0)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the event log
        step = trainer.state.global_step if trainer is not None else 0  # the last step that completed
        return record_failure(e, run, events, watcher, step, t0), None
    finally:
        watcher.stop()
        close_recorder(recorder)
        events.close()


@dataclass
class ResumePoint:
    """The checkpoint a resumed run continues from, and the newer ones it had to pass over."""

    resumed: bool = False  # --resume was given (an SFT stage may resume with no GRPO checkpoint yet)
    checkpoint: Path | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def find(cls, run: RunDir) -> ResumePoint:
        lookup = find_checkpoints(run.checkpoints)
        # a damaged newer checkpoint (torn trainer_state.json, killed mid-save): fall back past it, and say so
        skipped = [{"path": str(p), "reason": why} for p, why in lookup.skipped_after(lookup.latest)]
        return cls(True, lookup.latest, skipped)


def catch_stop_signals(watcher: CommandWatcher, main_rank: bool) -> None:
    """SIGTERM/SIGINT on rank 0: finish the step, checkpoint, stop (the stop command's path)."""
    if not main_rank:
        # Rank 0 decides and broadcasts the stop; the other ranks finish the step with it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return

    def on_signal(signum: int, frame: Any) -> None:
        watcher.submit({"id": f"signal-{signum}", "command": "stop", "args": {"signal": signum}})

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def versions() -> dict[str, str]:
    out = {}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def announce_start(
    events: Any,
    cfg: Config,
    run: RunDir,
    point: ResumePoint,
    device: str,
    rewards: list[TrlReward],
    weights: list[float],
    restarted: Path | None,
) -> None:
    """The run_start event (the whole config, versions, where a resume starts) and the `starting` state."""
    names = [r.__name__ for r in rewards]
    events.emit(
        "run_start",
        run_dir=str(run.root.resolve()),
        preset=cfg.preset.name,
        preset_path=cfg.source,
        model=cfg.model.name,
        pid=os.getpid(),
        host=socket.gethostname(),
        resumed=point.resumed,
        resume_from=str(point.checkpoint) if point.checkpoint else None,
        max_steps=cfg.train.max_steps,
        num_generations=cfg.train.num_generations,
        reward_names=names,
        reward_weights=dict(zip(names, weights)),
        device=device,
        versions=versions(),
        config=cfg.to_dict(),
        world_size=distributed.world_size(),
        skipped_checkpoints=point.skipped,
        restarted=restarted is not None,
        set_aside=str(restarted) if restarted else None,
    )
    events.state("starting")
    for s in point.skipped:
        print(f"skipping {s['path']}: {s['reason']}; resuming from {point.checkpoint}", flush=True)


def end_run(events: Any, status: str, step: int, t0: float) -> tuple[int, None]:
    """The last state and run_end of a run that ended without failing."""
    events.state("finished", step=step, detail=status)
    events.emit("run_end", status=status, step=step, exit_code=EXIT_OK, elapsed_s=round(time.time() - t0, 2))
    return EXIT_OK, None


def finish(
    cfg: Config, events: Any, trainer: RecordingGRPOTrainer, callback: EngineCallback, t0: float
) -> tuple[int, str | None]:
    """After trainer.train returned: finished, stopped, or switched to another preset (main() re-executes)."""
    step = trainer.state.global_step
    if cfg.train.share_prompt_prefix:
        c = trainer.shared_prefix_counts
        print(
            f"share_prompt_prefix: {c['scoring']} scoring passes and {c['generation']} generations ran on "
            f"shared prompts; {c['scoring_unshared']} and {c['generation_unshared']} had no repeated prompt "
            "and ran as TRL's own",
            flush=True,
        )
    if callback.switch_to:
        # Same pid, same run directory, same log: a UI watching the process sees one run go on.
        events.state("starting", step=step, detail=f"switching to preset {callback.switch_to}")
        events.emit(
            "run_end",
            status="switched",
            step=step,
            exit_code=EXIT_OK,
            elapsed_s=round(time.time() - t0, 2),
            next_preset=callback.switch_to,
        )
        return EXIT_OK, callback.switch_to
    return end_run(events, "stopped" if callback.stop_requested else "finished", step, t0)


def close_recorder(recorder: RolloutRecorder | None) -> None:
    if recorder is None:
        return
    try:
        recorder.close()  # drains queued groups, seals the newest steps into a columnar segment
    except Exception as e:  # noqa: BLE001 - a segment is an index; the JSONL already holds the data
        print(f"warning: could not seal the last rollout segment: {e}", file=sys.stderr)
