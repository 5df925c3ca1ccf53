"""`python -m grpo_tui.engine train`: pre-flight checks, the run directory, and one training run.

Everything that can be checked without loading a model (preset, overrides,
rewards, data files, the run directory itself) is checked before anything is
written; a failure there exits 2 with a message naming the file, key and fix.

The run directory is owner-only (rundir.layout): created 0700 (0750 with
--group-access), nothing in it followed through a link, and one engine at a
time holds its lock (RunLock) from before the first write to exit, across the
in-place re-executions of a preset switch and of `accelerate launch`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from grpo_tui.engine import distributed
from grpo_tui.engine.config import Config, PresetError, load_config, load_resolved
from grpo_tui.engine.gpu import default_allocator_env, visible_gpus
from grpo_tui.rundir.control import ensure_control_dir
from grpo_tui.rundir.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, GrpoTuiError
from grpo_tui.rundir.layout import (GROUP_ACCESS_ENV, LOCK_FD_ENV, LOCK_HOLDER_ENV, RESTART_PREFIX, RunDir, RunLock,
                           UnsafeRunDir, check_run_dir, checkpoint_step, checkpoint_unfinished, find_checkpoints,
                           make_private_dir, open_private, replace_private, set_aside_for_restart,
                           trusted_file_problem, write_private)

# Set by the launcher: the temporary file that holds the engine's output until engine.log exists.
PREFLIGHT_LOG_ENV = "GRPO_TUI_PREFLIGHT_LOG"
TRACEBACK_CHARS = 8000  # the error event keeps the end of a traceback: short enough to write on a nearly full disk


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
    p = argparse.ArgumentParser(prog="python -m grpo_tui.engine", description="grpo-tui training engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="run GRPO training into a run directory")
    t.add_argument("--preset", help="preset name or path to a .toml file (optional with --resume)")
    t.add_argument("--run-dir", required=True, type=Path, help="run directory to create (or continue with --resume)")
    t.add_argument("--max-steps", type=int, help="override train.max_steps")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value, e.g. --set train.learning_rate=1e-5 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    t.add_argument("--restart", action="store_true",
                   help="start the run in --run-dir over from step 0 under its config.json: its event log is kept "
                        f"and appended to; checkpoints, rollouts and stage outputs move to RUN_DIR/{RESTART_PREFIX}TIME/")
    t.add_argument("--group-access", action="store_true",
                   help=f"create the run directory 0750 and its files 0640 so your group can read them "
                        f"(default: owner only; also {GROUP_ACCESS_ENV}=1)")
    t.add_argument("--device", choices=("cpu",),
                   help="cpu: run any preset on the CPU with every other knob as written (smoke tests); "
                        "parts that need CUDA (vLLM, 4-bit, paged/8-bit optimizers, DeepSpeed) stop in pre-flight")
    t.add_argument("--log-to-run-dir", action="store_true",
                   help="after pre-flight, send all output to RUN_DIR/engine.log only (used by the launcher)")
    return p


def check_request(args: argparse.Namespace) -> Config:
    """The checks that need neither torch nor the data: the preset, the overrides, the run directory.

    Quick (no heavy imports), so a UI runs them before launching the engine, and a second
    engine on a locked run or a bad value is refused within a second or two.
    Raises PresetError or UnsafeRunDir; writes nothing.
    """
    run = RunDir(args.run_dir)
    overrides = list(args.overrides)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise PresetError("--max-steps must be at least 1.")
        overrides.append(f"train.max_steps={args.max_steps}")
    if getattr(args, "device", None) == "cpu":
        overrides.append("train.use_cpu=true")
    if args.resume and args.restart:
        raise PresetError("--resume and --restart exclude each other: --resume continues from the latest "
                          "checkpoint, --restart starts over from step 0.")
    check_run_dir(run)
    if args.resume or args.restart:
        flag = "--resume" if args.resume else "--restart"
        if not run.config.exists():
            raise PresetError(f"{flag}: {args.run_dir} is not a run directory (no config.json); "
                              f"drop {flag} to start a new run there.")
        cfg = load_config(args.preset, overrides) if args.preset else load_resolved(run.config, overrides)
        if args.resume:
            check_resumable(run, cfg)
    else:
        if not args.preset:
            raise PresetError("--preset is required for a new run (a name from `grpo-tui presets` or a .toml path).")
        if (run.exists() or run.config.exists()) and distributed.is_main() and distributed.world_size() == 1:
            raise PresetError(f"{args.run_dir} already holds a run; pass --resume to continue it, "
                              "or choose another --run-dir.")
        if args.run_dir.exists() and not args.run_dir.is_dir():
            raise PresetError(f"--run-dir {args.run_dir} exists and is not a directory.")
        cfg = load_config(args.preset, overrides)
    return cfg


def preflight(args: argparse.Namespace) -> Config:
    """All checks that need no model. Raises PresetError or UnsafeRunDir; writes nothing.

    Nothing here imports torch, transformers or TRL, so a refusal comes in seconds.
    """
    cfg = check_request(args)
    # GPU, optional packages, model and datasets: before anything heavy is imported or downloaded
    from grpo_tui.engine.preflight import check
    check(cfg, args.run_dir if (args.resume or args.restart) else None)
    from grpo_tui.engine.data.loader import check_files, load_rows
    from grpo_tui.engine.rewards import RewardSpecError
    from grpo_tui.engine.rewards.trl_adapter import build_rewards, close_rewards
    try:
        close_rewards(build_rewards(cfg)[0])  # imports user reward files in worker processes, bounded in time
    except RewardSpecError as e:
        raise PresetError(f"{cfg.source}: [rewards] {e}") from None
    check_files(cfg.data)
    # Every data problem surfaces here, before the run directory exists: the rows are read once, now.
    args.data = load_rows(cfg.data, cfg.train.seed, min_rows=prompts_per_batch(cfg))
    return cfg


def check_resumable(run: RunDir, cfg: Config) -> None:
    """--resume needs a complete checkpoint (or the SFT stage's own progress); else exit 2 offering --restart."""
    lookup = find_checkpoints(run.checkpoints)
    if lookup.latest is not None:
        return
    if cfg.sft.enabled and (run.sft_done() or find_checkpoints(run.sft_checkpoints).latest):
        return  # stopped during (or right after) the SFT stage: that stage resumes
    why = "; ".join(f"{p.name}: {r}" for p, r in lookup.skipped) or "none was written"
    raise PresetError(f"--resume: {run.checkpoints} holds no usable checkpoint ({why}). Pass --restart instead "
                      f"to start over from step 0 in {run.root} (the event log is kept and appended to; old "
                      f"checkpoints and rollouts are moved to a {RESTART_PREFIX}* folder there).")


def prompts_per_batch(cfg: Config) -> int:
    """Distinct prompts in one generation batch: fewer usable rows than this can't make a single step."""
    t = cfg.train
    completions = t.per_device_train_batch_size * (t.steps_per_generation or t.gradient_accumulation_steps)
    return max(1, completions * cfg.distributed.num_processes // t.num_generations)


def switch_problem(current: Config, preset: str) -> str | None:
    """Why the run can't continue under `preset` from its current weights, or None if it can."""
    if distributed.world_size() > 1:
        return ("switching presets is not supported in a multi-process run: stop it, then start again with "
                f"--resume --preset {preset}")
    try:
        new = load_config(preset, [f"train.max_steps={current.train.max_steps}"])
    except PresetError as e:
        return str(e)
    if new.source and Path(new.source).is_file():
        # a command file names the preset: only run code from presets you (or root, for installed ones) own
        problem = trusted_file_problem(new.source, "preset")
        if problem:
            return problem
    a, b = current.model, new.model
    for key in ("name", "lora", "lora_r", "lora_target_modules", "lora_layers", "load_in_4bit",
                "tiny_hidden_size", "tiny_layers"):
        if getattr(a, key) != getattr(b, key):
            return (f"preset {preset} has [model] {key} = {getattr(b, key)!r} but this run has "
                    f"{getattr(a, key)!r}: its checkpoint can't continue under another model or adapter shape")
    try:
        from grpo_tui.engine.rewards.trl_adapter import build_rewards, close_rewards
        close_rewards(build_rewards(new)[0])
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


def _os_error(exc: BaseException) -> OSError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


TORCH_SHORT_WRITE = ("basic_ios", "failed writing", "unexpected pos")


def describe_failure(exc: BaseException, run: RunDir) -> str:
    """One short line for the error event: "no space left on device while writing checkpoint-12".

    torch reports a full disk as "basic_ios::clear", "PytorchStreamWriter failed" or
    "[enforce fail at inline_container.cc] unexpected pos" (a short write in the zip
    writer), so with one of those a disk with almost no space left counts as full. An unfinished newest
    checkpoint names what was being written (and is removed: it can't be resumed
    from, and its space lets the failure be recorded).
    """
    os_err = _os_error(exc)
    text = f"{type(exc).__name__}: {exc}"
    try:
        free = shutil.disk_usage(run.root).free
    except OSError:
        free = None
    full = (os_err is not None and os_err.errno == errno.ENOSPC) or "No space left" in text or (
        free is not None and free < (16 << 20) and any(m in text for m in TORCH_SHORT_WRITE))
    lookup = find_checkpoints(run.checkpoints)
    unfinished = [p for p, _ in lookup.skipped_after(lookup.latest) if checkpoint_unfinished(p)]
    where = f" while writing {unfinished[-1].name}" if unfinished else ""
    if full:
        for p in unfinished:
            shutil.rmtree(p, ignore_errors=True)
        return f"no space left on device{where} (in {run.root})"
    if os_err is not None:
        target = f" ({os_err.filename})" if os_err.filename else ""
        return f"{os_err.strerror or type(os_err).__name__}{where}{target}"[:500]
    return (text + where)[:500]


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Call fn; on a full disk (or any OS error) carry on: the failure path must reach run_end."""
    try:
        fn(*args, **kwargs)
        return True
    except (OSError, ValueError):
        return False


def train(cfg: Config, run: RunDir, resume: bool, restarted: Path | None = None,
          data: tuple | None = None) -> tuple[int, str | None]:
    """One training run: (exit code, the preset a switch_preset command asked to continue under, or None)."""
    import torch
    from grpo_tui.engine.data.loader import drop_long_prompts, load_rows, prompt_token_limit, to_dataset
    from grpo_tui.rundir.events import EventWriter, read_events
    from grpo_tui.engine.models import load_model, lora_config, pick_device, pick_threads
    from grpo_tui.rundir.rollouts import RolloutWriter
    from grpo_tui.engine.train.telemetry import MemoryProbe
    from grpo_tui.engine.train.commands import CommandWatcher
    from grpo_tui.engine.rewards.trl_adapter import build_rewards
    from grpo_tui.engine.train.grpo import EngineCallback, RecordingGRPOTrainer, RolloutRecorder, grpo_args

    t0 = time.time()
    main_rank = distributed.is_main()
    events = EventWriter(run.events) if main_rank else distributed.NullEvents()
    watcher = CommandWatcher(run.control, events, check_switch=lambda p: switch_problem(cfg, p))
    lookup = find_checkpoints(run.checkpoints) if resume else None
    checkpoint = lookup.latest if lookup else None
    # a damaged newer checkpoint (torn trainer_state.json, killed mid-save): fall back past it, and say so
    skipped = [{"path": str(p), "reason": why} for p, why in lookup.skipped_after(checkpoint)] if lookup else []
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
    events.emit("run_start", run_dir=str(run.root.resolve()), preset=cfg.preset.name, preset_path=cfg.source,
                model=cfg.model.name, pid=os.getpid(), host=socket.gethostname(), resumed=resume,
                resume_from=str(checkpoint) if checkpoint else None, max_steps=cfg.train.max_steps,
                num_generations=cfg.train.num_generations, reward_names=names,
                reward_weights=dict(zip(names, weights)), device=device, versions=_versions(),
                config=cfg.to_dict(), world_size=distributed.world_size(), skipped_checkpoints=skipped,
                restarted=restarted is not None, set_aside=str(restarted) if restarted else None)
    events.state("starting")
    for s in skipped:
        print(f"skipping {s['path']}: {s['reason']}; resuming from {checkpoint}", flush=True)
    if main_rank:
        watcher.start()
    try:
        rows, report = data or load_rows(cfg.data, cfg.train.seed, min_rows=prompts_per_batch(cfg))
        events.emit("dataset", **report.as_event())
        events.state("loading_model")
        print(f"{report.rows_used} training rows ({sum(report.skipped.values())} skipped); loading {cfg.model.name}",
              flush=True)
        threads = pick_threads(cfg.train.torch_threads, device)
        if threads is not None:
            print(f"torch threads: {threads} (train.torch_threads = {cfg.train.torch_threads}; 0 is auto)", flush=True)
        from grpo_tui.engine.train.sft import before_grpo, starting_model

        def model_log(message: str) -> None:  # the one-time GGUF conversion's progress, also as the state detail
            print(message, flush=True)
            events.state("loading_model", detail=message)

        # TRL's config first: under `accelerate launch --zero3_init_flag` building it registers the DeepSpeed
        # config (a weak reference held while `args` lives), so from_pretrained below loads the weights
        # partitioned under deepspeed.zero.Init instead of whole on every rank.
        args = grpo_args(cfg, run.checkpoints, device)
        loaded = load_model(starting_model(cfg, run.root), device, log=model_log)
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in loaded.model.parameters())
        limit = prompt_token_limit(cfg.data.max_prompt_tokens, loaded.model.config, cfg.train.max_completion_length)
        before = len(rows)
        rows = drop_long_prompts(rows, loaded.tokenizer, cfg.prompt, limit, report)
        if len(rows) < before:
            events.emit("dataset", **report.as_event(), max_prompt_tokens=limit)
            print(f"{before - len(rows)} rows skipped: prompt over {limit} tokens", flush=True)
            if len(rows) < prompts_per_batch(cfg):
                raise PresetError(f"[data] {len(rows)} rows left after skipping prompts over {limit} tokens, fewer "
                                  f"than one generation batch ({prompts_per_batch(cfg)} prompts).")
        if cfg.sft.enabled or cfg.curriculum.prepass:
            rows = before_grpo(cfg, run.root, loaded, rows, events, watcher, device)
            if rows is None:  # a stop command during the SFT stage
                events.state("finished", step=0, detail="stopped")
                events.emit("run_end", status="stopped", step=0, exit_code=EXIT_OK,
                            elapsed_s=round(time.time() - t0, 2))
                return EXIT_OK, None
        if cfg.sft.enabled:
            # TRL builds the KL reference model from the policy's config._name_or_path; after an in-process SFT
            # stage that is still the base model's name. Point it at the SFT weights, fresh and resumed alike.
            loaded.model.config._name_or_path = str(run.sft_model.resolve())
        dataset = to_dataset(rows, cfg.prompt)
        torch.manual_seed(cfg.train.seed)
        trainer_cls = RecordingGRPOTrainer
        if cfg.curriculum.dynamic_sampling:  # drop all-right/all-wrong groups, refill the batch
            from grpo_tui.engine.train.dynamic_sampling import DynamicSamplingGRPOTrainer as trainer_cls
        trainer = trainer_cls(model=loaded.model, reward_funcs=rewards, args=args,
                              train_dataset=dataset, processing_class=loaded.tokenizer,
                              share_prompt_prefix=cfg.train.share_prompt_prefix,
                              stop_strings=cfg.train.stop_strings,
                              fast_cpu_decode=cfg.train.fast_cpu_decode,
                              peft_config=lora_config(cfg.model, getattr(loaded.model.config, "num_hidden_layers", None)))
        if cfg.curriculum.dynamic_sampling:
            c = cfg.curriculum
            trainer.configure_dynamic_sampling(c.dynamic_sampling_criterion, c.dynamic_sampling_max_extra,
                                               cfg.prompt.format, cfg.train.seed)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        ref = getattr(trainer, "ref_model", None)
        events.emit("model", name=cfg.model.name, path=loaded.path, parameters=n_params, trainable=trainable,
                    reference=ref.config._name_or_path if ref is not None else None,
                    dtype=str(loaded.dtype).replace("torch.", ""), load_s=round(loaded.load_s, 2))
        if main_rank:
            recorder = RolloutRecorder(RolloutWriter(run.rollouts), names, weights, cfg.train.num_generations,
                                       cfg.prompt.format, cfg.train.max_completion_length)
        trainer.recorder = recorder
        callback = EngineCallback(events, watcher, recorder, rewards, MemoryProbe(device),
                                  cfg.train.max_steps, cfg.train.save_final)
        callback.trainer = trainer
        if checkpoint:
            callback.learning_rate = cfg.train.learning_rate
        # health checks after every step, written as `health` events; live knobs (`set` commands)
        from grpo_tui.rundir.health import HealthMonitor
        callback.health = HealthMonitor(max_completion_length=cfg.train.max_completion_length,
                                        dynamic_sampling=cfg.curriculum.dynamic_sampling)
        if checkpoint and main_rank:  # the rules see the steps before the checkpoint too, not a fresh run
            for h in callback.health.resume(read_events(run.events), checkpoint_step(checkpoint) or 0):
                events.emit("health", **h)
        callback.config_path = run.config if main_rank else None
        watcher.check_set = callback.check_set
        trainer.add_callback(callback)
        if cfg.eval.every_steps > 0 and main_rank:  # `eval` events on a held-out subset
            from grpo_tui.engine.eval.evaluate import make_eval_callback
            trainer.add_callback(make_eval_callback(cfg, run.root, device, events, callback))
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)  # our one-line step report replaces its dict dumps
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step = trainer.state.global_step
        watcher.close()  # a command that came too late is answered before run_end, the log's last event
        if cfg.train.share_prompt_prefix:
            c = trainer.shared_prefix_counts
            print(f"share_prompt_prefix: {c['scoring']} scoring passes and {c['generation']} generations ran on "
                  f"shared prompts; {c['scoring_unshared']} and {c['generation_unshared']} had no repeated prompt "
                  "and ran as TRL's own", flush=True)
        if callback.switch_to:
            events.state("starting", step=step, detail=f"switching to preset {callback.switch_to}")
            events.emit("run_end", status="switched", step=step, exit_code=EXIT_OK,
                        elapsed_s=round(time.time() - t0, 2), next_preset=callback.switch_to)
            return EXIT_OK, callback.switch_to  # main() re-executes the engine under it
        status = "stopped" if callback.stop_requested else "finished"
        events.state("finished", step=step, detail=status)
        events.emit("run_end", status=status, step=step, exit_code=EXIT_OK, elapsed_s=round(time.time() - t0, 2))
        return EXIT_OK, None
    except BaseException as e:  # noqa: BLE001 - every failure must reach the event log
        tb = traceback.format_exc()
        message = describe_failure(e, run)
        _quietly(print, tb, file=sys.stderr, flush=True)
        _quietly(watcher.close, "the run failed before its next step boundary")
        # each event is written whole or not at all; on a full disk the short form may still fit
        if not _quietly(events.emit, "error", message=message, traceback=tb[-TRACEBACK_CHARS:]):
            _quietly(events.emit, "error", message=message, traceback="")
        _quietly(events.state, "failed", step=step)
        _quietly(events.emit, "run_end", status="failed", step=step, exit_code=EXIT_FAILED,
                 elapsed_s=round(time.time() - t0, 2))
        _quietly(print, f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_FAILED, None
    finally:
        watcher.stop()
        if recorder is not None:
            try:
                recorder.close()  # drains queued groups, seals the newest steps into a columnar segment
            except Exception as e:  # noqa: BLE001 - a segment is an index; the JSONL already holds the data
                print(f"warning: could not seal the last rollout segment: {e}", file=sys.stderr)
        events.close()


def _take_run_dir(run: RunDir) -> RunLock:
    """Create the run directory owner-only (or check it) and take its lock. Raises UnsafeRunDir/RunLocked/OSError."""
    run.root.parent.mkdir(parents=True, exist_ok=True)
    make_private_dir(run.root, "run directory", follow=True)
    return RunLock.acquire(run.root)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.group_access:
        os.environ[GROUP_ACCESS_ENV] = "1"  # inherited by re-executions and ranks
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Whatever the engine writes (checkpoints, segments, stage outputs) is owner-only as well.
    os.umask(0o027 if os.environ.get(GROUP_ACCESS_ENV) == "1" else 0o077)
    try:
        cfg = preflight(args)
    except GrpoTuiError as e:  # UnsafeRunDir too
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    run = RunDir(args.run_dir)
    # One process holds the lock for the job: this one, unless it is a rank under a launcher that holds it
    # (or a launcher on a machine other than the main one, which writes no run directory).
    under_launcher = "WORLD_SIZE" in os.environ and os.environ.get(LOCK_HOLDER_ENV)
    run_lock: RunLock | None = None
    try:
        if not under_launcher and cfg.distributed.machine_rank == 0 and distributed.is_main():
            run_lock = _take_run_dir(run)
    except UnsafeRunDir as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"error: --run-dir {run.root}: can't create it: {e.strerror}; choose a directory you can write.",
              file=sys.stderr)
        return EXIT_USAGE
    if cfg.train.use_cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # this process and any ranks it launches stay off the GPU
    if distributed.needs_launch(cfg):
        # Everything was checked in this one process; now become the accelerate job (same pid, same lock).
        sys.stdout.flush(), sys.stderr.flush()
        os.environ[distributed.LAUNCHED_ENV] = "1"
        if run_lock is not None:
            run_lock.keep_across_exec()
            os.environ[LOCK_HOLDER_ENV] = str(os.getpid())
        os.environ["PYTHONSAFEPATH"] = "1"  # the ranks run `python -m`: keep the cwd off their import path
        os.execv(sys.executable, distributed.accelerate_argv(cfg, list(sys.argv[1:] if argv is None else argv)))
    try:
        return _run(args, cfg, run, run_lock)
    except UnsafeRunDir as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if run_lock is not None:  # a preset switch execs before this point and keeps the lock
            run_lock.release()


def _run(args: argparse.Namespace, cfg: Config, run: RunDir, run_lock: RunLock | None) -> int:
    t = cfg.train
    # before anything touches CUDA: the allocator reads its setting once
    alloc_note = default_allocator_env(os.environ, t.use_vllm and t.vllm_mode == "colocate"
                                       and t.vllm_enable_sleep_mode) if not t.use_cpu and visible_gpus() else None
    distributed.init()
    main_rank = distributed.is_main()
    os.environ.pop(LOCK_FD_ENV, None)  # a rank's copy of the launcher's note, meaningless here
    restarted = None
    if main_rank:
        if run_lock is None:
            holder = RunLock.holder(run.root)
            if holder is None or str(holder) != os.environ.get(LOCK_HOLDER_ENV):
                raise UnsafeRunDir(f"{run.root}: rank 0 runs without its launcher's lock on the run directory; "
                                   "start multi-process runs with `python -m grpo_tui.engine train` (it launches the ranks).")
        ensure_control_dir(run.control)
        if args.restart:
            restarted = set_aside_for_restart(run)
    distributed.barrier()  # the run directory exists for every rank from here on
    log_path = run.engine_log if main_rank else run.rank_log(distributed.rank())
    if args.log_to_run_dir:
        # Detached: from here on fds 1 and 2 (C-level warnings included) go to engine.log.
        sys.stdout.flush(), sys.stderr.flush()
        fd = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "engine log")
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
        log = os.fdopen(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "engine log"),
                        "a", encoding="utf-8")
        sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
    if main_rank and (not args.resume or args.preset or args.overrides or args.max_steps is not None):
        # config.json is always the config in force; every run_start event also carries its own.
        replace_private(run.config, json.dumps(cfg.to_dict(), indent=2), "config")
    if main_rank:
        write_private(run.pid_file, str(os.getpid()), "pid file")
        if alloc_note:
            print(alloc_note, flush=True)
    try:
        code, switch_to = train(cfg, run, args.resume, restarted, getattr(args, "data", None))
    finally:
        if main_rank:
            try:
                run.pid_file.unlink()
            except FileNotFoundError:
                pass
    if code == 0:
        distributed.finish()
    if switch_to:
        # Same pid, same run directory, same log, same lock: a UI watching the process sees one run go on.
        argv = [sys.executable, "-P", "-m", "grpo_tui.engine", "train", "--run-dir", str(args.run_dir), "--resume",
                "--preset", switch_to, "--max-steps", str(cfg.train.max_steps)]
        if args.log_to_run_dir:
            argv.append("--log-to-run-dir")
        if run_lock is not None:
            run_lock.keep_across_exec()
        sys.stdout.flush(), sys.stderr.flush()
        os.execv(sys.executable, argv)
    return code
