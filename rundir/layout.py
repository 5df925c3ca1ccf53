"""A run directory's paths and its safety checks: RunDir, check_run_dir, and --restart's set-aside.

The engine is the only writer; every reader (dashboard, headless printer,
browser, tests) opens the same files through RunDir. The names themselves are
spelled in rundir.names. See docs/run-directory.md.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.errors import UnsafeRunDir
from grpo_tui.rundir.names import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    CONTROL_NAME,
    CURRICULUM_NAME,
    ENGINE_LOG_NAME,
    EVAL_NAME,
    EVAL_RESULTS_NAME,
    EVENTS_NAME,
    LOCK_NAME,
    OLD_PART_SUFFIX,
    PASS_RATES_NAME,
    PID_NAME,
    RANK_LOG_NAME,
    RESTART_PREFIX,
    ROLLOUTS_NAME,
    SEGMENTS_NAME,
    SFT_MODEL_NAME,
    SFT_NAME,
    TRACKERS_NAME,
)
from grpo_tui.rundir.private_io import (
    check_private_dir,
    link_refused,
    make_private_dir,
    open_regular,
    ownership_problem,
)
from grpo_tui.rundir.run_lock import LOCK_HOLDER_ENV, RunLock, RunLocked, read_pid

ENGINE_LOG_MAX_BYTES = 16 << 20  # engine.log's cap (a user reward may print without bound)
# Entries of a run directory the engine writes; none may be a link or belong to someone else.
ENTRIES = (
    CONFIG_NAME,
    f".{CONFIG_NAME}.tmp",
    EVENTS_NAME,
    ROLLOUTS_NAME,
    ENGINE_LOG_NAME,
    f"{ENGINE_LOG_NAME}{OLD_PART_SUFFIX}",
    PID_NAME,
    LOCK_NAME,
)
DIRS = (CONTROL_NAME, CHECKPOINTS_NAME, SEGMENTS_NAME, SFT_NAME, CURRICULUM_NAME, EVAL_NAME, TRACKERS_NAME)
# What --restart sets aside: the earlier attempt's outputs (not the event log, engine log or config).
ATTEMPT_OUTPUTS = (CHECKPOINTS_NAME, ROLLOUTS_NAME, SEGMENTS_NAME, SFT_NAME, CURRICULUM_NAME, EVAL_NAME)


@dataclass
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def events(self) -> Path:
        return self.root / EVENTS_NAME

    @property
    def rollouts(self) -> Path:
        return self.root / ROLLOUTS_NAME

    @property
    def rollout_segments(self) -> Path:
        """Arrow segments of rollouts.jsonl (rundir.rollouts.segments)."""
        return self.root / SEGMENTS_NAME

    @property
    def engine_log(self) -> Path:
        return self.root / ENGINE_LOG_NAME

    def rank_log(self, rank: int) -> Path:
        """The output of one non-zero rank of a multi-process run (rank 0 writes engine.log)."""
        return self.root / RANK_LOG_NAME.format(rank=rank)

    @property
    def control(self) -> Path:
        return self.root / CONTROL_NAME

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_NAME

    @property
    def trackers(self) -> Path:
        """TensorBoard event files and W&B offline runs, when [train] report_to names them."""
        return self.root / TRACKERS_NAME

    @property
    def sft(self) -> Path:
        """The SFT stage's own directory."""
        return self.root / SFT_NAME

    @property
    def sft_model(self) -> Path:
        """The SFT stage's finished model (GRPO starts from it)."""
        return self.sft / SFT_MODEL_NAME

    @property
    def sft_checkpoints(self) -> Path:
        return self.sft / CHECKPOINTS_NAME

    def sft_done(self) -> bool:
        """The SFT stage finished: its model is saved (written complete or not at all)."""
        return (self.sft_model / CONFIG_NAME).is_file()

    @property
    def curriculum(self) -> Path:
        return self.root / CURRICULUM_NAME

    @property
    def pass_rates(self) -> Path:
        """The curriculum pre-pass's cache: one problem a line."""
        return self.curriculum / PASS_RATES_NAME

    @property
    def eval_dir(self) -> Path:
        """In-run evaluations: eval/step-N.jsonl."""
        return self.root / EVAL_NAME

    def eval_results(self, step: int) -> Path:
        return self.eval_dir / EVAL_RESULTS_NAME.format(step=step)

    @property
    def pid_file(self) -> Path:
        return self.root / PID_NAME

    def exists(self) -> bool:
        return self.events.exists()

    def is_run(self) -> bool:
        """A run a model can be taken from: its config, and an event log or checkpoints."""
        return self.config.is_file() and (self.events.exists() or self.checkpoints.is_dir())

    def has_records(self) -> bool:
        """Anything a reader can show: an event log, a config or rollouts."""
        return any(f.exists() for f in (self.events, self.config, self.rollouts, self.rollout_segments))

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest step (see find_checkpoints)."""
        return find_checkpoints(self.checkpoints).latest

    def engine_pid(self) -> int | None:
        """The pid of a live engine writing this run, or None.

        The run lock decides: the kernel drops it when the engine dies, so a stale engine.pid whose number now
        belongs to another process means nothing. Only a run directory without a lock file (written before
        the lock existed) falls back on engine.pid.
        """
        if self.lock_file.exists() or self.lock_file.is_symlink():
            holder = RunLock.holder(self.root)
            if holder is None:
                return None
            return holder or self._pid_from_file() or 0
        return self._pid_from_file()

    def _pid_from_file(self) -> int | None:
        try:
            fd = open_regular(self.pid_file, follow=False)
        except OSError:
            return None
        if fd is None:
            return None
        try:
            pid = read_pid(fd)
        finally:
            os.close(fd)
        if pid is None or pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid


def check_run_dir(run: RunDir) -> None:
    """Everything about the run directory that can be checked without writing. Raises UnsafeRunDir."""
    root = run.root
    if root.exists() or root.is_symlink():
        check_private_dir(root, "run directory", follow=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise UnsafeRunDir(f"--run-dir {root}: you can't write to it; choose a directory you can write.")
        for name in ENTRIES:
            p = root / name
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise link_refused(p)
            problem = ownership_problem(st, p, "file")
            if problem:
                raise UnsafeRunDir(problem)
        if run.control.exists() or run.control.is_symlink():
            check_private_dir(run.control, "control directory")
        for name in DIRS:
            _no_link(root / name)
        holder = RunLock.holder(root)
        if holder is not None and holder != os.getpid() and not os.environ.get(LOCK_HOLDER_ENV):
            raise RunLocked(root, holder)
        return
    parent = root.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UnsafeRunDir(
            f"--run-dir {root}: can't create it, {parent} is not a directory you can write; "
            "choose a --run-dir under a directory of yours."
        )


def older_part(log: Path) -> Path:
    """Where a capped log (engine.log, a rank's log) keeps its previous part: the same name plus `.1`."""
    return Path(log).with_name(f"{Path(log).name}{OLD_PART_SUFFIX}")


def enclosing_run(path: Path) -> Path | None:
    """The run directory that `path` is, or lies inside (its own or any above it), or None.

    A run directory is one with an event log or a run lock: the engine owns all of it (config.json alone
    would also match a model directory)."""
    p = Path(path).expanduser().resolve()
    for d in (p, *p.parents):
        if (d / EVENTS_NAME).exists() or (d / LOCK_NAME).exists():
            return d
    return None


def _no_link(path: Path) -> None:
    if path.is_symlink():
        raise link_refused(path)


def set_aside_for_restart(run: RunDir) -> Path | None:
    """--restart: move what belongs to the old attempt (not the event log, log, config) into before-restart-TIME/."""
    old = [run.root / n for n in ATTEMPT_OUTPUTS]
    old = [p for p in old if p.exists() or p.is_symlink()]
    if not old:
        return None
    dest = run.root / time.strftime(f"{RESTART_PREFIX}%Y%m%d-%H%M%S")
    make_private_dir(dest, "restart folder")
    for p in old:
        os.rename(p, dest / p.name)
    return dest
