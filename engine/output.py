"""Where the engine's output goes once its run directory exists: engine.log (a rank's own log on other ranks).

Detached (the launcher's --log-to-run-dir), file descriptors 1 and 2 are pointed at the log, so C-level
warnings land there too, and what pre-flight printed to a temporary file is moved in. Attached to a terminal,
Python's streams are teed to the terminal and the log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from grpo_tui.rundir.private_io import open_private

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


def stdout_is(path: Path) -> bool:
    """Whether file descriptor 1 already is `path` (a shell redirect): then no tee is needed."""
    try:
        a, b = os.fstat(1), os.stat(path)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except OSError:
        return False


def _open_log(log_path: Path) -> int:
    return open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "engine log")


def route_output(log_path: Path, detached: bool, main_rank: bool) -> None:
    """Send this process's output to log_path: only there when detached, else to the terminal as well."""
    if detached:
        sys.stdout.flush(), sys.stderr.flush()
        fd = _open_log(log_path)
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
    elif not stdout_is(log_path):
        log = os.fdopen(_open_log(log_path), "a", encoding="utf-8")
        sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
    from grpo_tui.engine.log_cap import LogCap

    LogCap(log_path).start()  # the log stays bounded whatever a user's reward prints (engine/log_cap.py)
