"""Where things live in a run directory: the contract between engine and UIs.

The engine is the only writer; every reader (dashboard, headless printer,
browser, tests) opens the same files. See docs/run-directory.md.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpo_tui.rundir.errors import GrpoTuiError

SCHEMA_VERSION = 1
# "1": run directories are created 0750 and files 0640, and group members may share the run (they still
# can't write to it). Set by `python -m grpo_tui.engine train --group-access` (and inherited by re-executions).
GROUP_ACCESS_ENV = "GRPO_TUI_GROUP_ACCESS"
LOCK_NAME = "engine.lock"
# "fd:dev:ino" of the lock an engine hands to its own re-execution (preset switch, accelerate launch).
LOCK_FD_ENV = "GRPO_TUI_LOCK_FD"
# pid of the launcher that holds the lock for a multi-process job (its ranks run under it).
LOCK_HOLDER_ENV = "GRPO_TUI_LOCK_HOLDER"
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
# Names in a run directory (only this module spells them; tests/test_imports.py checks that nothing else does).
CONFIG_NAME, EVENTS_NAME, ROLLOUTS_NAME = "config.json", "events.jsonl", "rollouts.jsonl"
ENGINE_LOG_NAME, PID_NAME = "engine.log", "engine.pid"
OLD_ENGINE_LOG_NAME = f"{ENGINE_LOG_NAME}.1"  # its older part, once engine.log passed its cap
ENGINE_LOG_MAX_BYTES = 16 << 20  # engine.log's cap (a user reward may print without bound)
CONTROL_NAME, CHECKPOINTS_NAME, SEGMENTS_NAME, TRACKERS_NAME = "control", "checkpoints", "rollouts", "trackers"
SFT_NAME, CURRICULUM_NAME, EVAL_NAME = "sft", "curriculum", "eval"
RESTART_PREFIX = "before-restart-"
TRAINER_STATE = "trainer_state.json"  # in a checkpoint: the trainer writes it last
# Entries of a run directory the engine writes; none may be a link or belong to someone else.
ENTRIES = (
    CONFIG_NAME,
    f".{CONFIG_NAME}.tmp",
    EVENTS_NAME,
    ROLLOUTS_NAME,
    ENGINE_LOG_NAME,
    OLD_ENGINE_LOG_NAME,
    PID_NAME,
    LOCK_NAME,
)
DIRS = (CONTROL_NAME, CHECKPOINTS_NAME, SEGMENTS_NAME, SFT_NAME, CURRICULUM_NAME, EVAL_NAME, TRACKERS_NAME)
# What --restart sets aside: the earlier attempt's outputs (not the event log, engine log or config).
ATTEMPT_OUTPUTS = (CHECKPOINTS_NAME, ROLLOUTS_NAME, SEGMENTS_NAME, SFT_NAME, CURRICULUM_NAME, EVAL_NAME)


class UnsafeRunDir(GrpoTuiError):
    """A run directory (or a file in it) the engine refuses to use; the message names the path and the fix."""


class RunLocked(UnsafeRunDir):
    """Another live engine holds the run directory's lock."""

    def __init__(self, root: Path, pid: int | None) -> None:
        self.pid = pid
        who = f"engine pid {pid}" if pid else "another engine"
        super().__init__(
            f"{root} is in use by {who} (it holds {root / LOCK_NAME}); one engine writes a run at a "
            f"time: wait for it to end, stop it (grpo-tui attach {root}, then s), or choose another --run-dir."
        )


# ------------------------------------------------------------------ ownership


def group_access() -> bool:
    return os.environ.get(GROUP_ACCESS_ENV) == "1"


def dir_mode() -> int:
    return 0o750 if group_access() else 0o700


def file_mode() -> int:
    return 0o640 if group_access() else 0o600


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def ownership_problem(st: os.stat_result, path: Path, what: str, *, allow_root: bool = False) -> str | None:
    """Why a file or directory with this stat must not be trusted by this user, or None.

    Trusted: owned by us (or by root when allow_root, for installed files) and
    writable by nobody else (a group other than our primary group may write only
    under group access).
    """
    me = os.geteuid()
    if st.st_uid != me and not (allow_root and st.st_uid == 0):
        return (
            f"{what} {path} belongs to {_owner(st.st_uid)}, not to you ({_owner(me)}); the engine only uses "
            f"{what}s you own: copy it, or choose a path of your own."
        )
    # Group write is fine for your own primary group (a user-private group under umask 002, as on Ubuntu)
    # and under group access; any other group could change the file behind your back.
    group_ok = group_access() or st.st_gid == os.getegid()
    others = 0o002 if group_ok else 0o022
    if stat.S_IMODE(st.st_mode) & others and not stat.S_ISLNK(st.st_mode):
        who = "other users" if st.st_mode & 0o002 else "its group"
        return f"{what} {path} can be written by {who}; make it yours alone: chmod go-w {path}"
    return None


def trusted_file_problem(path: Path | str, what: str = "file") -> str | None:
    """Why code or config from `path` (a reward file, a preset) must not run as this user, or None."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return f"{what} {path}: {e.strerror}"
    return ownership_problem(st, path, what, allow_root=True)


def check_private_dir(path: Path, what: str, *, follow: bool = False) -> None:
    """Raise UnsafeRunDir unless `path` is a directory we own that others cannot write.

    `follow` allows the path itself to be a symbolic link (a run directory the user
    named through a link); entries inside a run directory are never followed.
    """
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRunDir(
            f"{what} {path} is a symbolic link; the engine never follows links inside a run "
            f"directory: remove the link ({path}) and start again."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRunDir(f"{what} {path} is not a directory; remove it or choose another --run-dir.")
    problem = ownership_problem(st, path, what)
    if problem:
        raise UnsafeRunDir(problem)


def make_private_dir(path: Path, what: str, *, follow: bool = False) -> None:
    """Create `path` owner-only (0700, 0750 with group access) unless it exists, then check it."""
    try:
        os.mkdir(path, dir_mode())
    except FileExistsError:
        pass
    check_private_dir(path, what, follow=follow)


def open_private(path: Path, flags: int, what: str = "file") -> int:
    """os.open without following a symbolic link; new files are 0600 (0640 with group access).

    Refuses (UnsafeRunDir) a link, something not a regular file, a file another
    user owns or can write, and a file with other hard links (writing it would
    change a file elsewhere).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeRunDir(
                f"{what} {path} is a symbolic link; the engine never follows links inside a run "
                f"directory: remove the link ({path}) and start again."
            ) from None
        raise
    try:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = f"{what} {path} is not a regular file; remove it and start again."
        elif st.st_nlink > 1 and flags & (os.O_WRONLY | os.O_RDWR):
            problem = f"{what} {path} has other hard links; writing it would change them too: remove it."
        else:
            problem = ownership_problem(st, path, what)
        if problem:
            raise UnsafeRunDir(problem)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: str, what: str = "file") -> None:
    """Replace a file's contents (no link followed, owner-only mode)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, what)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)


def replace_private(path: Path, data: str, what: str = "file") -> None:
    """Write a whole new version of a file atomically: a private temporary beside it, then rename.
    A reader sees the old file or the new one, never half of one (config.json: start, live knobs)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, data, f"temporary {what}")
    os.replace(tmp, path)


# ------------------------------------------------------------------ one writer


class RunLock:
    """An exclusive flock on RUN_DIR/engine.lock, held for the engine's whole life.

    flock belongs to the open file description, so it survives os.execv when the
    descriptor is inheritable (the preset switch re-executes the engine in place,
    and a multi-process job's launcher execs into `accelerate launch`): the new
    program finds it through LOCK_FD_ENV. The kernel drops it when the last
    descriptor closes, so a killed engine never leaves a stale lock.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, root: Path) -> RunLock:
        path = Path(root) / LOCK_NAME
        inherited = cls._inherited(path)
        if inherited is not None:
            return inherited
        fd = open_private(path, os.O_RDWR | os.O_CREAT, "lock file")
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # a reader probing liveness (holder) holds a shared lock for an instant: try again briefly
                if attempt == _LOCK_TRIES - 1:
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise RunLocked(Path(root), pid) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(fd, path)

    @staticmethod
    def _inherited(path: Path) -> RunLock | None:
        spec = os.environ.pop(LOCK_FD_ENV, None)
        if not spec:
            return None
        try:
            fd, dev, ino = (int(x) for x in spec.split(":"))
            st, here = os.fstat(fd), os.lstat(path)
            if (st.st_dev, st.st_ino) != (dev, ino) or (here.st_dev, here.st_ino) != (dev, ino):
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds only if this description holds it
        except (OSError, ValueError):
            return None
        os.set_inheritable(fd, False)
        return RunLock(fd, path)

    @staticmethod
    def holder(root: Path) -> int | None:
        """The pid holding the lock of a run directory (0 if unknown), or None if it is free. Writes nothing."""
        try:
            fd = os.open(Path(root) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted there is no lock
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(fd) or 0
            return None
        finally:
            os.close(fd)  # also drops the shared lock taken to probe

    def keep_across_exec(self) -> None:
        """Let the next program image of this process (os.execv) take the lock over."""
        st = os.fstat(self.fd)
        os.set_inheritable(self.fd, True)
        os.environ[LOCK_FD_ENV] = f"{self.fd}:{st.st_dev}:{st.st_ino}"

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_LOCK_TRIES = 20  # 10 ms apart: a probe holds the lock for microseconds


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ checkpoints


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint directory can't be used, or None if it is complete.

    Complete means: trainer_state.json (written last by the trainer) parses and
    names its step, and the weights' config (config.json, or adapter_config.json
    for LoRA) is there.
    """
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "unfinished (no trainer_state.json)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"damaged trainer_state.json ({type(e).__name__}: {e})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "damaged trainer_state.json (no global_step)"
    if not ((path / CONFIG_NAME).is_file() or (path / "adapter_config.json").is_file()):
        return "no config.json or adapter_config.json"
    return None


@dataclass
class CheckpointLookup:
    usable: dict[int, Path] = field(default_factory=dict)  # step -> complete checkpoint
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # newer-or-not, what was wrong

    @property
    def latest(self) -> Path | None:
        return self.usable[max(self.usable)] if self.usable else None

    def skipped_after(self, path: Path | None) -> list[tuple[Path, str]]:
        """Unusable checkpoints newer than `path` (the ones a resume falls back past)."""
        step = _step_of(path) if path is not None else -1
        return [(p, why) for p, why in self.skipped if _step_of(p) > step]


def _step_of(path: Path) -> int:
    m = _CHECKPOINT_RE.fullmatch(path.name)
    return int(m.group(1)) if m else -1


def checkpoint_step(path: Path) -> int | None:
    """N for a directory named checkpoint-N, else None."""
    step = _step_of(Path(path))
    return step if step >= 0 else None


def checkpoint_path(directory: Path, step: int) -> Path:
    """Where the trainer writes the checkpoint of `step` in a checkpoints directory."""
    return Path(directory) / f"checkpoint-{step}"


def checkpoint_unfinished(path: Path) -> bool:
    """The trainer had not finished writing this checkpoint (it writes trainer_state.json last)."""
    return not (Path(path) / TRAINER_STATE).exists()


def find_checkpoints(directory: Path) -> CheckpointLookup:
    """Every checkpoint-N in `directory`: the complete ones by step, the others with the reason.

    The one place that decides what a usable checkpoint is (GRPO resume, the SFT
    stage, eval's RUN@STEP all call it).
    """
    out = CheckpointLookup()
    try:
        entries = sorted(Path(directory).iterdir())
    except OSError:
        return out
    for p in entries:
        m = _CHECKPOINT_RE.fullmatch(p.name)
        if not m or p.is_symlink() or not p.is_dir():
            continue
        why = checkpoint_problem(p)
        if why:
            out.skipped.append((p, why))
        else:
            out.usable[int(m.group(1))] = p
    out.skipped.sort(key=lambda x: _step_of(x[0]))
    return out


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
        return self.root / f"engine.rank{rank}.log"

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
        return self.sft / "model"

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
        return self.curriculum / "pass_rates.jsonl"

    @property
    def eval_dir(self) -> Path:
        """In-run evaluations: eval/step-N.jsonl."""
        return self.root / EVAL_NAME

    def eval_results(self, step: int) -> Path:
        return self.eval_dir / f"step-{step}.jsonl"

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
            fd = os.open(self.pid_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            pid = _read_pid(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
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


# ------------------------------------------------------------------ safety and restart


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
            if os.path.islink(p):
                raise UnsafeRunDir(
                    f"{p} is a symbolic link; the engine never follows links inside a run directory: "
                    f"remove the link ({p}) and start again."
                )
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
    return Path(log).with_name(f"{Path(log).name}.1")


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
        raise UnsafeRunDir(
            f"{path} is a symbolic link; the engine never follows links inside a run directory: "
            f"remove the link ({path}) and start again."
        )


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
