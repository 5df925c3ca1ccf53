"""One writer per run directory: the engine's exclusive lock on engine.lock, and who holds it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from grpo_tui.rundir.errors import UnsafeRunDir
from grpo_tui.rundir.names import LOCK_NAME
from grpo_tui.rundir.private_io import open_private, open_regular

# "fd:dev:ino" of the lock an engine hands to its own re-execution (preset switch, accelerate launch).
LOCK_FD_ENV = "GRPO_TUI_LOCK_FD"
# pid of the launcher that holds the lock for a multi-process job (its ranks run under it).
LOCK_HOLDER_ENV = "GRPO_TUI_LOCK_HOLDER"


class RunLocked(UnsafeRunDir):
    """Another live engine holds the run directory's lock."""

    def __init__(self, root: Path, pid: int | None) -> None:
        self.pid = pid
        who = f"engine pid {pid}" if pid else "another engine"
        super().__init__(
            f"{root} is in use by {who} (it holds {root / LOCK_NAME}); one engine writes a run at a "
            f"time: wait for it to end, stop it (grpo-tui attach {root}, then s), or choose another --run-dir."
        )


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
                    pid = read_pid(fd)
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
            fd = open_regular(Path(root) / LOCK_NAME, follow=False)  # a FIFO or device planted there is no lock
        except OSError:
            return None
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_pid(fd) or 0
        finally:
            os.close(fd)  # also drops the shared lock taken to probe
        return None

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


def read_pid(fd: int) -> int | None:
    """The pid written in an open lock or pid file, or None."""
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (OSError, ValueError):
        return None
