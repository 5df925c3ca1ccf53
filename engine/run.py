"""`python -m grpo_tui.engine train`: the command line, the checks before anything is written, the process.

Everything that can be checked without loading a model (preset, overrides,
rewards, data files, the run directory itself) is checked before anything is
written; a failure there exits 2 with a message naming the file, key and fix.

The run directory is owner-only (rundir.private_io): created 0700 (0750 with
--group-access), nothing in it followed through a link, and one engine at a
time holds its lock (RunLock) from before the first write to exit, across the
in-place re-executions of a preset switch and of `accelerate launch`.

The training run itself is engine/train/orchestrator.py; this module imports
neither torch nor TRL, so a refusal comes in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from grpo_tui.engine import distributed
from grpo_tui.engine.config import Config, PresetError, load_config, load_resolved
from grpo_tui.engine.gpu import default_allocator_env, visible_gpus
from grpo_tui.engine.output import PREFLIGHT_LOG_ENV, route_output
from grpo_tui.engine.train.batch_shape import prompts_per_batch
from grpo_tui.engine.train_flags import add_train_flags
from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.control import ensure_control_dir
from grpo_tui.rundir.errors import EXIT_USAGE, GrpoTuiError, UnsafeRunDir
from grpo_tui.rundir.layout import RunDir, check_run_dir, set_aside_for_restart
from grpo_tui.rundir.names import RESTART_PREFIX
from grpo_tui.rundir.private_io import GROUP_ACCESS_ENV, make_private_dir, replace_private, write_private
from grpo_tui.rundir.run_lock import LOCK_FD_ENV, LOCK_HOLDER_ENV, RunLock

__all__ = ["PREFLIGHT_LOG_ENV", "build_parser", "check_request", "check_resumable", "main", "preflight"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grpo_tui.engine", description="grpo-tui training engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="run GRPO training into a run directory")
    add_train_flags(t, run_dir_required=True)
    t.add_argument(
        "--group-access",
        action="store_true",
        help=f"create the run directory 0750 and its files 0640 so your group can read them "
        f"(default: owner only; also {GROUP_ACCESS_ENV}=1)",
    )
    t.add_argument(
        "--log-to-run-dir",
        action="store_true",
        help="after pre-flight, send all output to RUN_DIR/engine.log only (used by the launcher)",
    )
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
        raise PresetError(
            "--resume and --restart exclude each other: --resume continues from the latest "
            "checkpoint, --restart starts over from step 0."
        )
    check_run_dir(run)
    if args.resume or args.restart:
        flag = "--resume" if args.resume else "--restart"
        if not run.config.exists():
            raise PresetError(
                f"{flag}: {args.run_dir} is not a run directory (no config.json); drop {flag} to start a new run there."
            )
        cfg = load_config(args.preset, overrides) if args.preset else load_resolved(run.config, overrides)
        if args.resume:
            check_resumable(run, cfg)
    else:
        if not args.preset:
            raise PresetError("--preset is required for a new run (a name from `grpo-tui presets` or a .toml path).")
        if (run.exists() or run.config.exists()) and distributed.is_main() and distributed.world_size() == 1:
            raise PresetError(
                f"{args.run_dir} already holds a run; pass --resume to continue it, or choose another --run-dir."
            )
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
    from grpo_tui.engine.rewards.trl_call import close_rewards
    from grpo_tui.engine.train.rewards import build_rewards

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
    raise PresetError(
        f"--resume: {run.checkpoints} holds no usable checkpoint ({why}). Pass --restart instead "
        f"to start over from step 0 in {run.root} (the event log is kept and appended to; old "
        f"checkpoints and rollouts are moved to a {RESTART_PREFIX}* folder there)."
    )


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
        print(
            f"error: --run-dir {run.root}: can't create it: {e.strerror}; choose a directory you can write.",
            file=sys.stderr,
        )
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
    alloc_note = (
        default_allocator_env(os.environ, t.use_vllm and t.vllm_mode == "colocate" and t.vllm_enable_sleep_mode)
        if not t.use_cpu and visible_gpus()
        else None
    )
    distributed.init()
    main_rank = distributed.is_main()
    os.environ.pop(LOCK_FD_ENV, None)  # a rank's copy of the launcher's note, meaningless here
    restarted = None
    if main_rank:
        if run_lock is None:
            holder = RunLock.holder(run.root)
            if holder is None or str(holder) != os.environ.get(LOCK_HOLDER_ENV):
                raise UnsafeRunDir(
                    f"{run.root}: rank 0 runs without its launcher's lock on the run directory; "
                    "start multi-process runs with `python -m grpo_tui.engine train` "
                    "(it launches the ranks)."
                )
        ensure_control_dir(run.control)
        if args.restart:
            restarted = set_aside_for_restart(run)
    distributed.barrier()  # the run directory exists for every rank from here on
    log_path = run.engine_log if main_rank else run.rank_log(distributed.rank())
    route_output(log_path, detached=args.log_to_run_dir, main_rank=main_rank)
    if main_rank and (not args.resume or args.preset or args.overrides or args.max_steps is not None):
        # config.json is always the config in force; every run_start event also carries its own.
        replace_private(run.config, json.dumps(cfg.to_dict(), indent=2), "config")
    if main_rank:
        write_private(run.pid_file, str(os.getpid()), "pid file")
        if alloc_note:
            print(alloc_note, flush=True)
    try:
        from grpo_tui.engine.train.orchestrator import train  # torch, transformers, TRL: only once checks passed

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
        argv = [
            sys.executable,
            "-P",
            "-m",
            "grpo_tui.engine",
            "train",
            "--run-dir",
            str(args.run_dir),
            "--resume",
            "--preset",
            switch_to,
            "--max-steps",
            str(cfg.train.max_steps),
        ]
        if args.log_to_run_dir:
            argv.append("--log-to-run-dir")
        if run_lock is not None:
            run_lock.keep_across_exec()
        sys.stdout.flush(), sys.stderr.flush()
        os.execv(sys.executable, argv)
    return code
