"""`python -m engine train`: pre-flight checks, the run directory, and one training run.

Everything that can be checked without loading a model (preset, overrides,
rewards, data files, the run directory itself) is checked before anything is
written; a failure there exits 2 with a message naming the file, key and fix.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from engine import distributed
from engine.config import Config, PresetError, load_config, load_resolved
from rundir.control import ensure_control_dir
from rundir.layout import RunDir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Set by the launcher: the temporary file that holds the engine's output until engine.log exists.
PREFLIGHT_LOG_ENV = "GRPO_TUI_PREFLIGHT_LOG"


class Tee:
    """Write to the terminal and to engine.log (when not already redirected there)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()

    def isatty(self) -> bool:
        return False


def _stdout_is(path: Path) -> bool:
    try:
        a, b = os.fstat(1), os.stat(path)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except OSError:
        return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="grpo-tui training engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="run GRPO training into a run directory")
    t.add_argument("--preset", help="preset name or path to a .toml file (optional with --resume)")
    t.add_argument("--run-dir", required=True, type=Path, help="run directory to create (or continue with --resume)")
    t.add_argument("--max-steps", type=int, help="override train.max_steps")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value, e.g. --set train.learning_rate=1e-5 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    t.add_argument("--device", choices=("cpu",),
                   help="cpu: run any preset on the CPU with every other knob as written (smoke tests); "
                        "parts that need CUDA (vLLM, 4-bit, paged/8-bit optimizers, DeepSpeed) stop in pre-flight")
    t.add_argument("--log-to-run-dir", action="store_true",
                   help="after pre-flight, send all output to RUN_DIR/engine.log only (used by the launcher)")
    return p


def preflight(args: argparse.Namespace) -> Config:
    """All checks that need no model. Raises PresetError; writes nothing."""
    run = RunDir(args.run_dir)
    overrides = list(args.overrides)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise PresetError("--max-steps must be at least 1.")
        overrides.append(f"train.max_steps={args.max_steps}")
    if getattr(args, "device", None) == "cpu":
        overrides.append("train.use_cpu=true")
    if args.resume:
        if not run.config.exists():
            raise PresetError(f"--resume: {args.run_dir} is not a run directory (no config.json); "
                              "drop --resume to start a new run there.")
        cfg = load_config(args.preset, overrides) if args.preset else load_resolved(run.config, overrides)
    else:
        if not args.preset:
            raise PresetError("--preset is required for a new run (a name from `grpo-tui presets` or a .toml path).")
        if (run.exists() or run.config.exists()) and distributed.is_main() and distributed.world_size() == 1:
            raise PresetError(f"{args.run_dir} already holds a run; pass --resume to continue it, "
                              "or choose another --run-dir.")
        if args.run_dir.exists() and not args.run_dir.is_dir():
            raise PresetError(f"--run-dir {args.run_dir} exists and is not a directory.")
        cfg = load_config(args.preset, overrides)
    # GPU, optional packages, model and datasets: before anything heavy is imported or downloaded
    from engine.preflight import check
    check(cfg, args.run_dir if args.resume else None)
    from engine.data.loader import check_files
    from engine.rewards import RewardSpecError
    from engine.train.grpo import build_rewards
    try:
        build_rewards(cfg)
    except RewardSpecError as e:
        raise PresetError(f"{cfg.source}: [rewards] {e}") from None
    check_files(cfg.data)
    return cfg


def switch_problem(current: Config, preset: str) -> str | None:
    """Why the run can't continue under `preset` from its current weights, or None if it can."""
    if distributed.world_size() > 1:
        return ("switching presets is not supported in a multi-process run: stop it, then start again with "
                f"--resume --preset {preset}")
    try:
        new = load_config(preset, [f"train.max_steps={current.train.max_steps}"])
    except PresetError as e:
        return str(e)
    a, b = current.model, new.model
    for key in ("name", "lora", "lora_r", "lora_target_modules", "lora_layers", "load_in_4bit",
                "tiny_hidden_size", "tiny_layers"):
        if getattr(a, key) != getattr(b, key):
            return (f"preset {preset} has [model] {key} = {getattr(b, key)!r} but this run has "
                    f"{getattr(a, key)!r}: its checkpoint can't continue under another model or adapter shape")
    try:
        from engine.train.grpo import build_rewards
        build_rewards(new)
    except Exception as e:  # noqa: BLE001 - any reward problem is a reason to refuse
        return f"preset {preset}: [rewards] {e}"
    return None


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "grpo-tui"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    return out


def train(cfg: Config, run: RunDir, resume: bool) -> int:
    import torch
    from engine.data.loader import load_rows, to_dataset
    from rundir.events import EventWriter
    from engine.models import load_model, lora_config, pick_device
    from rundir.rollouts import RolloutWriter
    from engine.train.telemetry import MemoryProbe
    from engine.train.grpo import (CommandWatcher, EngineCallback, RecordingGRPOTrainer, RolloutRecorder,
                              build_rewards, grpo_args)

    t0 = time.time()
    main_rank = distributed.is_main()
    events = EventWriter(run.events) if main_rank else distributed.NullEvents()
    lock = threading.Lock()
    watcher = CommandWatcher(run.control, events, lock, check_switch=lambda p: switch_problem(cfg, p))
    checkpoint = run.latest_checkpoint() if resume else None
    device = pick_device(cfg.train.use_cpu)
    rewards, weights = build_rewards(cfg)
    names = [r.__name__ for r in rewards]
    step = 0
    callback = None
    recorder = None

    def on_signal(signum: int, frame: Any) -> None:
        # SIGTERM/SIGINT: finish the step, checkpoint, stop (same path as the stop command).
        watcher.submit({"id": f"signal-{signum}", "command": "stop", "args": {"signal": signum}})

    if main_rank:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    else:
        # Rank 0 decides and broadcasts the stop; the other ranks finish the step with it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with lock:
        events.emit("run_start", run_dir=str(run.root.resolve()), preset=cfg.preset.name, preset_path=cfg.source,
                    model=cfg.model.name, pid=os.getpid(), host=socket.gethostname(), resumed=resume,
                    resume_from=str(checkpoint) if checkpoint else None, max_steps=cfg.train.max_steps,
                    num_generations=cfg.train.num_generations, reward_names=names,
                    reward_weights=dict(zip(names, weights)), device=device, versions=_versions(),
                    config=cfg.to_dict(), world_size=distributed.world_size())
        events.state("starting")
    if main_rank:
        watcher.start()
    try:
        if resume and checkpoint is None:
            with lock:
                events.emit("error", message="no finished checkpoint to resume from; starting from step 0",
                            traceback="")
        rows, report = load_rows(cfg.data, cfg.train.seed)
        with lock:
            events.emit("dataset", **report.as_event())
            events.state("loading_model")
        print(f"{report.rows_used} training rows ({sum(report.skipped.values())} skipped); loading {cfg.model.name}",
              flush=True)
        from engine.train.sft import before_grpo, sft_model_dir, starting_model  # SFT stage, curriculum pre-pass
        # TRL's config first: under `accelerate launch --zero3_init_flag` building it registers the DeepSpeed
        # config (a weak reference held while `args` lives), so from_pretrained below loads the weights
        # partitioned under deepspeed.zero.Init instead of whole on every rank.
        args = grpo_args(cfg, run.checkpoints, device)
        loaded = load_model(starting_model(cfg, run.root), device, log=lambda m: print(m, flush=True))
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in loaded.model.parameters())
        if cfg.sft.enabled or cfg.curriculum.prepass:
            rows = before_grpo(cfg, run.root, loaded, rows, events, lock, watcher, device)
            if rows is None:  # a stop command during the SFT stage
                with lock:
                    events.state("finished", step=0, detail="stopped")
                    events.emit("run_end", status="stopped", step=0, exit_code=EXIT_OK,
                                elapsed_s=round(time.time() - t0, 2))
                return EXIT_OK
        if cfg.sft.enabled:
            # TRL builds the KL reference model from the policy's config._name_or_path; after an in-process SFT
            # stage that is still the base model's name. Point it at the SFT weights, fresh and resumed alike.
            loaded.model.config._name_or_path = str(sft_model_dir(run.root).resolve())
        dataset = to_dataset(rows, cfg.prompt)
        torch.manual_seed(cfg.train.seed)
        trainer_cls = RecordingGRPOTrainer
        if cfg.curriculum.dynamic_sampling:  # issue 7: drop all-right/all-wrong groups, refill the batch
            from engine.train.dynamic_sampling import DynamicSamplingGRPOTrainer as trainer_cls
        trainer = trainer_cls(model=loaded.model, reward_funcs=rewards, args=args,
                              train_dataset=dataset, processing_class=loaded.tokenizer,
                              peft_config=lora_config(cfg.model, getattr(loaded.model.config, "num_hidden_layers", None)))
        if cfg.curriculum.dynamic_sampling:
            c = cfg.curriculum
            trainer.configure_dynamic_sampling(c.dynamic_sampling_criterion, c.dynamic_sampling_max_extra,
                                               cfg.prompt.format, cfg.train.seed)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        with lock:
            ref = getattr(trainer, "ref_model", None)
            events.emit("model", name=cfg.model.name, path=loaded.path, parameters=n_params, trainable=trainable,
                        reference=ref.config._name_or_path if ref is not None else None,
                        dtype=str(loaded.dtype).replace("torch.", ""), load_s=round(loaded.load_s, 2))
        if main_rank:
            recorder = RolloutRecorder(RolloutWriter(run.rollouts), names, weights, cfg.train.num_generations,
                                       cfg.prompt.format, cfg.train.max_completion_length)
        trainer.recorder = recorder
        callback = EngineCallback(events, lock, watcher, recorder, rewards, MemoryProbe(device),
                                  cfg.train.max_steps, cfg.train.save_final)
        callback.trainer = trainer
        if checkpoint:
            callback.learning_rate = cfg.train.learning_rate
        trainer.add_callback(callback)
        if cfg.eval.every_steps > 0 and main_rank:  # issue 7: `eval` events on a held-out subset
            from engine.eval.evaluate import make_eval_callback
            trainer.add_callback(make_eval_callback(cfg, run.root, device, events, lock, callback))
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)  # our one-line step report replaces its dict dumps
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step = trainer.state.global_step
        if callback.switch_to:
            with lock:
                events.state("starting", step=step, detail=f"switching to preset {callback.switch_to}")
                events.emit("run_end", status="switched", step=step, exit_code=EXIT_OK,
                            elapsed_s=round(time.time() - t0, 2), next_preset=callback.switch_to)
            run.switch_to = callback.switch_to  # main() re-executes the engine under it
            return EXIT_OK
        status = "stopped" if callback.stop_requested else "finished"
        with lock:
            events.state("finished", step=step, detail=status)
            events.emit("run_end", status=status, step=step, exit_code=EXIT_OK, elapsed_s=round(time.time() - t0, 2))
        return EXIT_OK
    except BaseException as e:  # noqa: BLE001 - every failure must reach the event log
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        with lock:
            events.emit("error", message=f"{type(e).__name__}: {e}"[:500], traceback=tb)
            events.state("failed", step=step)
            events.emit("run_end", status="failed", step=step, exit_code=EXIT_FAILED,
                        elapsed_s=round(time.time() - t0, 2))
        return EXIT_FAILED
    finally:
        watcher.stop()
        if recorder is not None:
            try:
                recorder.close()  # drains queued groups, seals the newest steps into a columnar segment
            except Exception as e:  # noqa: BLE001 - a segment is an index; the JSONL already holds the data
                print(f"warning: could not seal the last rollout segment: {e}", file=sys.stderr)
        events.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = preflight(args)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if cfg.train.use_cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # this process and any ranks it launches stay off the GPU
    if distributed.needs_launch(cfg):
        # Everything was checked in this one process; now become the accelerate job (same pid).
        sys.stdout.flush(), sys.stderr.flush()
        os.environ[distributed.LAUNCHED_ENV] = "1"
        os.execv(sys.executable, distributed.accelerate_argv(cfg, list(sys.argv[1:] if argv is None else argv)))
    distributed.init()
    main_rank = distributed.is_main()
    run = RunDir(args.run_dir)
    if main_rank:
        run.root.mkdir(parents=True, exist_ok=True)
        ensure_control_dir(run.control)
    distributed.barrier()  # the run directory exists for every rank from here on
    log_path = run.engine_log if main_rank else run.root / f"engine.rank{distributed.rank()}.log"
    if args.log_to_run_dir:
        # Detached: from here on fds 1 and 2 (C-level warnings included) go to engine.log.
        sys.stdout.flush(), sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1), os.dup2(fd, 2)
        os.close(fd)
        early = os.environ.get(PREFLIGHT_LOG_ENV)
        if main_rank and early:
            # keep what was printed before the run directory existed, and leave no temp file behind
            try:
                os.write(1, Path(early).read_bytes())
                os.unlink(early)
            except OSError:
                pass
    elif not _stdout_is(log_path):
        log = open(log_path, "a", encoding="utf-8")
        sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
    if main_rank and (not args.resume or args.preset or args.overrides or args.max_steps is not None):
        # config.json is always the config in force; every run_start event also carries its own.
        tmp = run.root / ".config.json.tmp"
        tmp.write_text(json.dumps(cfg.to_dict(), indent=2))
        os.replace(tmp, run.config)
    if main_rank:
        run.pid_file.write_text(str(os.getpid()))
    run.switch_to = None
    try:
        code = train(cfg, run, args.resume)
    finally:
        if main_rank:
            try:
                run.pid_file.unlink()
            except FileNotFoundError:
                pass
    if run.switch_to:
        # Same pid, same run directory, same log: a UI watching the process sees one run go on.
        argv = [sys.executable, "-m", "engine", "train", "--run-dir", str(args.run_dir), "--resume",
                "--preset", run.switch_to, "--max-steps", str(cfg.train.max_steps)]
        if args.log_to_run_dir:
            argv.append("--log-to-run-dir")
        sys.stdout.flush(), sys.stderr.flush()
        os.execv(sys.executable, argv)
    return code
