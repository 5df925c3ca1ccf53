"""Writing events.jsonl: one whole line per event, checked against its record, flushed, owner-only.

A line is written with one os.write on an O_APPEND descriptor, and cut off again if the disk fills mid-write,
so the log never holds half an event this engine wrote; a torn last line left by a killed engine is ended first.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from grpo_tui.rundir.events import State, check_event
from grpo_tui.rundir.names import SCHEMA_VERSION
from grpo_tui.rundir.private_io import open_private


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; readers in other languages choke on them.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class _LineAppender:
    """A text sink that appends each write whole or not at all.

    One os.write per event on an O_APPEND descriptor (no 8 KB buffer to cut a
    long event in two); if the disk is full mid-write, the partial bytes are
    cut off again, so the log never holds half an event written by this engine.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        start = os.fstat(self.fd).st_size
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass
            raise
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _end_torn_line(fd: int) -> None:
    """A killed engine may have left half a line: end it, so the next event starts a line of its own
    (readers then skip that one damaged line instead of losing the next event with it)."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


class EventWriter:
    """Appends events to events.jsonl. One writer per run (the engine's main process); thread-safe.

    The file is opened without following a link (UnsafeRunDir if it is one, or
    not ours), owner-only when created, and a torn last line is ended first.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, "event log")
        try:
            _end_torn_line(fd)
        except OSError:
            os.close(fd)
            raise
        self._f = _LineAppender(fd)
        self._lock = threading.Lock()  # the command watcher, recorder and trainer threads all emit

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        check_event(type, fields)
        with self._lock:
            event = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": type, **_clean(fields)}
            self._f.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._f.flush()
        return event

    def state(self, state: State | str, **fields: Any) -> dict[str, Any]:
        return self.emit("state", state=state, **fields)

    def close(self) -> None:
        """Make the log durable and close it; never raises (it runs on the way out of a failure)."""
        with self._lock:
            try:
                os.fsync(self._f.fileno())
            except (OSError, ValueError):
                pass
            try:
                self._f.close()
            except OSError:
                pass
