"""Reading rollouts.jsonl: the one tailing reader, the dashboard's step index, the browser's columnar reader.

- `RolloutTail` reads the complete lines of a growing rollouts.jsonl from a byte
  offset (a half-written last line waits for the rest; a damaged line is
  skipped and counted), either as (step, group, byte range) per line, which is
  how the dashboard indexes a long run without parsing it, or as parsed records.
- `RolloutIndex` (the dashboard's): step -> byte ranges of its groups, with the
  parsed groups of the few recently shown steps cached; an earlier step is read
  back from its byte ranges when the user looks at it.
- `RolloutReader` (the browser's): sealed Arrow segments first, then the JSONL
  after them through a RolloutTail, as columnar Chunks.

Rollout files are only ever parsed as JSON or read as Arrow arrays of plain
types: never executed, evaluated or unpickled.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from grpo_tui.rundir.event_reader import parse_lines
from grpo_tui.rundir.private_io import open_regular
from grpo_tui.rundir.rollouts.query import Rollouts
from grpo_tui.rundir.rollouts.records import ReadReport, line_key, parse_record, rollout_paths
from grpo_tui.rundir.rollouts.segments import SEGMENT_FORMAT, Chunk, list_segments, read_segment

_READ_BLOCK = 16 << 20  # JSONL is parsed in blocks so a huge plain file never sits in memory as dicts


@dataclass
class GroupLine:
    step: int
    group: int
    offset: int
    length: int
    record: dict[str, Any] | None  # parsed, for the newest lines only


def _open_log(path: Path) -> BinaryIO:
    """rollouts.jsonl opened for reading; FileNotFoundError when it is missing or not a regular file (a FIFO
    planted there would block a reader forever: private_io.open_regular never reads one)."""
    fd = open_regular(path)
    if fd is None:
        raise FileNotFoundError(f"{path}: no rollout log")
    return os.fdopen(fd, "rb")


class RolloutTail:
    """Complete new lines of a growing rollouts.jsonl, from a byte offset. No threads; file I/O only."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.skipped = 0  # complete lines that were not group records (read_new)

    def _read(self, end: int | None, block: int) -> bytes:
        """Bytes from the offset up to its last complete line within `end`; a line longer than
        the block makes the block grow until the line fits."""
        want = (end - self.offset) if end is not None else None
        while True:
            size = block if want is None else min(block, want)
            try:
                with _open_log(self.path) as f:
                    f.seek(self.offset)
                    data = f.read(size)
            except OSError:
                return b""
            if b"\n" in data or len(data) < size or (want is not None and block >= want):
                return data[: data.rfind(b"\n") + 1]
            block *= 2

    def read_new(self, max_bytes: int = 32 << 20, parse_from_step: int | None = None) -> list[GroupLine]:
        """New group lines; records are parsed only for steps >= parse_from_step (None: the last step read)."""
        base = self.offset
        data = self._read(None, max_bytes)
        lines: list[GroupLine] = []
        pos, end = 0, len(data)
        while pos < end:
            nl = data.index(b"\n", pos)
            raw = data[pos:nl]
            start = base + pos
            pos = nl + 1
            if not raw.strip():
                continue
            key = line_key(raw)
            if key is None:
                self.skipped += 1
                continue
            lines.append(GroupLine(key[0], key[1], start, len(raw), key[2]))
        self.offset += end
        if lines:
            last = lines[-1].step if parse_from_step is None else parse_from_step
            for line in lines:
                if line.step >= last and line.record is None:
                    rel = line.offset - base
                    line.record = parse_record(data[rel : rel + line.length])
                    if line.record is None:
                        self.skipped += 1
        return lines

    def read_records(self, end: int | None, report: ReadReport, max_bytes: int = 1 << 62) -> list[dict[str, Any]]:
        """Every JSON object among the new complete lines (up to byte `end`), advancing the offset.
        Lines that are not JSON objects are counted in report.skipped."""
        data = self._read(end, max_bytes)
        records, used, skipped = parse_lines(data)
        report.skipped += skipped
        report.jsonl_bytes += used
        self.offset += used
        return records


class RolloutIndex:
    """step -> groups, with the parsed groups of recently used steps cached (bounded)."""

    def __init__(self, path: Path, cache_steps: int = 16) -> None:
        self.path = Path(path)
        self._ranges: dict[int, dict[int, tuple[int, int]]] = {}
        self._steps: list[int] = []
        self._cache: OrderedDict[int, dict[int, dict[str, Any]]] = OrderedDict()
        self._cache_steps = cache_steps

    @property
    def steps(self) -> list[int]:
        return self._steps

    def add(self, lines: list[GroupLine]) -> set[int]:
        """Index new lines; returns the steps that changed. A re-recorded (step, group) replaces the old one."""
        changed: set[int] = set()
        for line in lines:
            if line.step not in self._ranges:
                self._ranges[line.step] = {}
                if not self._steps or line.step > self._steps[-1]:
                    self._steps.append(line.step)
                else:
                    self._steps = sorted(self._ranges)
            self._ranges[line.step][line.group] = (line.offset, line.length)
            cached = self._cache.get(line.step)
            if line.record is not None:
                if cached is None:
                    cached = self._cache[line.step] = {}
                cached[line.group] = line.record
            elif cached is not None:
                del self._cache[line.step]  # incomplete now; re-read on demand
            changed.add(line.step)
        for step in changed:
            if step in self._cache:
                self._cache.move_to_end(step)
        while len(self._cache) > self._cache_steps:
            self._cache.popitem(last=False)
        return changed

    def groups(self, step: int) -> list[dict[str, Any]]:
        """The groups of a step in group order (read from disk if not cached)."""
        ranges = self._ranges.get(step)
        if not ranges:
            return []
        cached = self._cache.get(step)
        if cached is None or len(cached) < len(ranges):
            cached = {}
            try:
                with _open_log(self.path) as f:
                    for group, (offset, length) in ranges.items():
                        f.seek(offset)
                        rec = parse_record(f.read(length))
                        if rec is not None:
                            cached[group] = rec
            except OSError:
                return []
            self._cache[step] = cached
        self._cache.move_to_end(step)
        while len(self._cache) > self._cache_steps:
            self._cache.popitem(last=False)
        return [cached[g] for g in sorted(cached)]


class RolloutReader:
    """Reads a run's rollouts as Chunks: segments at first, then new JSONL lines as they are appended.

    Not thread-safe; the browser calls it from one worker at a time. `read_new` does
    file I/O only and touches nothing but this reader.
    """

    def __init__(self, path_or_rundir: Path | str) -> None:
        self.path, self.segment_dir = rollout_paths(path_or_rundir)
        self._tail = RolloutTail(self.path)  # its offset: the JSONL bytes consumed
        self.report = ReadReport()
        self._opened = False

    def read_new(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        try:
            size = os.path.getsize(self.path)
            self.report.missing = False
        except OSError:
            size = None
            self.report.missing = True
        if not self._opened:
            self._opened = True
            chunks += self._read_segments(size)
        if size is None:
            return chunks
        if size < self._tail.offset:  # the file was replaced by something shorter: start over from its beginning
            self._tail.offset = 0
        chunks += self._read_jsonl(size)
        self.report.partial = max(0, size - self._tail.offset)
        return chunks

    def _read_jsonl(self, end: int) -> list[Chunk]:
        """Chunks of the complete lines from the tail's offset up to byte `end`, a block at a time."""
        chunks: list[Chunk] = []
        while self._tail.offset < end:
            before = self._tail.offset
            records = self._tail.read_records(end, self.report, _READ_BLOCK)
            if self._tail.offset == before:
                break  # only an unfinished line left
            if records:
                chunks.append(Chunk.from_records(records, self.report))
        return chunks

    def _read_segments(self, size: int | None) -> list[Chunk]:
        chunks: list[Chunk] = []
        pos = 0
        for start, end, path in list_segments(self.segment_dir):
            if size is not None and end > size:
                self.report.segment_problems.append(
                    f"{path.name}: describes bytes past the end of rollouts.jsonl; ignored"
                )
                continue
            if start < pos:
                continue  # overlaps what is already covered
            if start > pos and size is not None:
                # a hole (a segment that failed to write): parse those lines from the JSONL
                self._tail.offset = pos
                chunks += self._read_jsonl(start)
                pos = start
            try:
                chunk = read_segment(path)
            except Exception as e:  # noqa: BLE001 - a bad segment must not stop the browser
                self.report.segment_problems.append(
                    f"{path.name}: unreadable ({type(e).__name__}: {e}); read from rollouts.jsonl instead"
                )
                continue
            if getattr(chunk, "format", SEGMENT_FORMAT) > SEGMENT_FORMAT:
                self.report.segment_problems.append(
                    f"{path.name}: newer segment format; read the columns this reader knows"
                )
            chunks.append(chunk)
            self.report.segments += 1
            pos = end
        self._tail.offset = pos if size is not None else 0
        return chunks


def read_rollouts(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """(groups as dicts, lines skipped), in file order, from rollouts.jsonl alone.

    Skips a half-written or corrupt line instead of failing. For large runs prefer
    `open_rollouts` (columnar, uses the segments).
    """
    path = rollout_paths(path)[0]
    try:
        with _open_log(path) as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a finished file's last line may lack its newline; parse it if it is whole JSON
    groups, _, skipped = parse_lines(data)
    return groups, skipped


def open_rollouts(path_or_rundir: Path | str) -> Rollouts:
    """All rollouts of a run as a columnar snapshot (report: what was skipped)."""
    reader = RolloutReader(path_or_rundir)
    rollouts = Rollouts(reader.read_new(), reader.report)
    return rollouts
