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

from rundir.layout import SCHEMA_VERSION

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


class EventWriter:
    """Appends events to events.jsonl. One writer per run (the engine's main process)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": type, **_clean(fields)}
        self._f.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._f.flush()
        return event

    def state(self, state: str, **fields: Any) -> dict[str, Any]:
        assert state in STATES, state
        return self.emit("state", state=state, **fields)

    def close(self) -> None:
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError:
            pass
        self._f.close()


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
