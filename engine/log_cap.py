"""engine.log with a cap: a user's reward may print without bound, the run directory's disk may not fill.

Everything the engine process and its children (reward workers, ranks' launchers) print goes to one
engine.log opened O_APPEND, through inherited descriptors at the OS level, so no Python stream sees
all of it. A watcher thread checks the file's size a few times a second; past the cap, the log's
last part (at most the cap) is copied to engine.log.1, replacing the older part, and engine.log is
truncated in place. Every writer appends, so each write after the cut lands at the new end.

A reward worker prints synchronously before it answers, and calls can follow each other faster than the
watcher looks, so the engine also checks after every reward call (`check_now`) and once more at exit.
So the run keeps at most two parts of its log, each at most the cap (engine.log: plus what one reward call
prints, or what is printed between two of the watcher's checks). A rank's own log is capped the same way.
Text printed between the copy and the cut (an instant) is lost; so is a part older than engine.log.1.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

from grpo_tui.rundir.errors import UnsafeRunDir
from grpo_tui.rundir.layout import ENGINE_LOG_MAX_BYTES, older_part
from grpo_tui.rundir.private_io import open_private

CHECK_EVERY_S = 0.25
_COPY_CHUNK = 1 << 20
_active: LogCap | None = None  # this process's cap, once its output goes to a run directory's log


def rotate_if_over(log_fd: int, path: Path, max_bytes: int) -> bool:
    """Cut engine.log (open as log_fd) when it has passed max_bytes; True if it was cut. Never raises."""
    try:
        size = os.fstat(log_fd).st_size
        if size <= max_bytes:
            return False
        old = open_private(older_part(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "older part of the log")
        try:
            start = max(0, size - max_bytes)
            done = start
            while done < size:
                data = os.pread(log_fd, min(_COPY_CHUNK, size - done), done)
                if not data:
                    break
                os.write(old, data)
                done += len(data)
        finally:
            os.close(old)
        os.ftruncate(log_fd, 0)
        os.write(
            log_fd, f"[{path.name} passed {max_bytes} bytes: its last part is in {older_part(path).name}]\n".encode()
        )
        return True
    except (OSError, UnsafeRunDir):
        return False  # a full disk or a refused link: the log goes on as it is


class LogCap:
    """The watcher thread (a daemon: it ends with the process, and an exec'd engine starts its own)."""

    def __init__(self, path: Path, max_bytes: int = ENGINE_LOG_MAX_BYTES, every_s: float = CHECK_EVERY_S) -> None:
        self.path, self.max_bytes, self.every_s = Path(path), max_bytes, every_s
        # a descriptor of its own (read-write: the cut needs it), not through a link, only ever our file
        self.fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, "engine log")
        self._stop = threading.Event()
        self._cutting = threading.Lock()  # the watcher and check() never cut at the same time
        self._thread = threading.Thread(target=self._watch, name="engine-log-cap", daemon=True)

    def start(self) -> LogCap:
        global _active
        self._thread.start()
        _active = self
        atexit.register(self.check)  # what the last calls printed is cut too
        return self

    def check(self) -> bool:
        """Cut the log now if it has passed the cap; True if it was cut."""
        with self._cutting:
            return not self._stop.is_set() and rotate_if_over(self.fd, self.path, self.max_bytes)

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check()

    def stop(self) -> None:
        global _active
        self._stop.set()
        self._thread.join(timeout=5)
        with self._cutting:
            os.close(self.fd)
        if _active is self:
            _active = None


def check_now() -> None:
    """Cut this process's log now if it has passed the cap (a no-op when its output goes to no run log)."""
    cap = _active
    if cap is not None:
        cap.check()
