"""Reading events.jsonl, whole or as it grows, a chunk at a time (memory: one chunk, whatever the log's size).

Events come back as plain dicts (readers tolerate missing and unknown fields); a half-written last line is left
for the next read, a damaged line is skipped and counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grpo_tui.rundir.private_io import open_regular


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


READ_CHUNK = 8 << 20  # bytes a reader parses at a time: its memory is this plus its fold, whatever the log's size


def open_log(path: Path) -> int | None:
    """A read-only descriptor of a log, or None when it is missing or not a regular file (private_io.open_regular)."""
    return open_regular(path)


def read_chunk(path: Path, offset: int, max_bytes: int) -> bytes:
    """Up to max_bytes of a growing file from a byte offset (b"" if it doesn't exist yet, or is no file)."""
    fd = open_log(path)
    if fd is None:
        return b""
    try:
        return os.pread(fd, max_bytes, offset)
    finally:
        os.close(fd)


def iter_events(path: Path, chunk_bytes: int = READ_CHUNK) -> Iterator[list[dict[str, Any]]]:
    """Every complete event of a log to its end, in batches of one chunk each (memory: one chunk, not the file).

    A half-written last line is left out; a damaged line is skipped (EventTail.skipped counts them).
    """
    yield from EventTail(path).read_all(chunk_bytes)


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events of a log (a half-written last line is ignored)."""
    return [ev for batch in iter_events(path) for ev in batch]


class EventTail:
    """Reads new events from a growing events.jsonl, from a byte offset (toolong-style).

    `read_new` returns at most one chunk's events; `read_all` reads to the current end of the file. A line
    longer than a whole chunk (no event is that long) is skipped and counted, so a reader never stalls on it.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.skipped = 0
        self.progressed = False  # the last read_new moved the offset (there may be more to read)

    def read_new(self, max_bytes: int = READ_CHUNK) -> list[dict[str, Any]]:
        data = read_chunk(self.path, self.offset, max_bytes)
        events, used, skipped = parse_lines(data)
        if used == 0 and len(data) >= max_bytes:  # one line fills the chunk: skip to its end
            used = self._skip_long_line(self.offset + len(data), max_bytes)
            skipped += used > 0
        self.offset += used
        self.skipped += skipped
        self.progressed = used > 0
        return events

    def _skip_long_line(self, pos: int, max_bytes: int) -> int:
        """Bytes from the offset up to and including the newline that ends an overlong line, searched for from
        `pos` (the end of what was read already); 0 while the line is still being written."""
        while True:
            data = read_chunk(self.path, pos, max_bytes)
            if not data:
                return 0
            nl = data.find(b"\n")
            if nl >= 0:
                return pos + nl + 1 - self.offset
            pos += len(data)

    def read_all(self, max_bytes: int = READ_CHUNK) -> Iterator[list[dict[str, Any]]]:
        """Batches of new events up to the current end of the file (each batch at most one chunk's worth)."""
        while True:
            batch = self.read_new(max_bytes)
            if batch:
                yield batch
            elif not self.progressed:
                return

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (ev for batch in self.read_all() for ev in batch)
