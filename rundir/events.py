"""The append-only, versioned event log (events.jsonl), one JSON object a line.

Every line carries "v" (schema version), "t" (unix time) and "type". Lines are
written whole and flushed per event so a reader tailing the file never sees a
half-event except the very last line of a killed engine, which readers skip.
Field-by-field documentation: docs/run-directory.md.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

from rundir.layout import SCHEMA_VERSION, open_private

STATES = ("starting", "loading_model", "running", "pausing", "paused", "checkpointing",
          "stopping", "finished", "failed")


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
    """Appends events to events.jsonl. One writer per run (the engine's main process).

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

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": type, **_clean(fields)}
        self._f.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._f.flush()
        return event

    def state(self, state: str, **fields: Any) -> dict[str, Any]:
        assert state in STATES, state
        return self.emit("state", state=state, **fields)

    def close(self) -> None:
        """Make the log durable and close it; never raises (it runs on the way out of a failure)."""
        try:
            os.fsync(self._f.fileno())
        except (OSError, ValueError):
            pass
        try:
            self._f.close()
        except OSError:
            pass


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int, int]:
    """Parse complete lines of a chunk: (events, bytes consumed, lines skipped).

    A trailing line without a newline is not consumed (it may still be being
    written); a complete line that isn't valid JSON is skipped and counted.
    """
    events, skipped = [], 0
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            skipped += 1
            continue
        if isinstance(obj, dict):
            events.append(obj)
        else:
            skipped += 1
    return events, end, skipped


def read_chunk(path: Path, offset: int, max_bytes: int) -> bytes:
    """Up to max_bytes of a growing file from a byte offset (b"" if it doesn't exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(max_bytes)
    except FileNotFoundError:
        return b""


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a log (a half-written last line is ignored)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return parse_lines(data)[0]


class EventTail:
    """Reads new events from a growing events.jsonl, from a byte offset (toolong-style)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.skipped = 0

    def read_new(self, max_bytes: int = 8 << 20) -> list[dict[str, Any]]:
        data = read_chunk(self.path, self.offset, max_bytes)
        events, used, skipped = parse_lines(data)
        self.offset += used
        self.skipped += skipped
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read_new())
