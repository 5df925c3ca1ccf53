"""The dashboard's one reader of rollouts.jsonl: tail it from a byte offset, index groups by step.

Rollouts are the heavy part of a run directory (every completion's text), so
the dashboard keeps only an index (step -> byte ranges of its group lines)
plus the parsed groups of the few steps it shows recently; an earlier step is
read back from its byte ranges when the user looks at it. The tail itself runs
in the poller thread (`RolloutTail.read_new`); the index lives on the app's
thread (`RolloutIndex.add`, `RolloutIndex.groups`). No Textual here.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rundir.events import read_chunk

# The writer puts "v", "step" and "group" first on every line; reading them with a
# regex lets a long run's history be indexed without parsing every completion.
_HEAD = re.compile(rb'^\{"v":\s*\d+,\s*"step":\s*(-?\d+),\s*"group":\s*(-?\d+)')


@dataclass
class GroupLine:
    step: int
    group: int
    offset: int
    length: int
    record: dict[str, Any] | None  # parsed, for the newest lines only


class RolloutTail:
    """Reads new complete lines of a growing rollouts.jsonl (a half-written last line waits)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.skipped = 0

    def read_new(self, max_bytes: int = 32 << 20, parse_from_step: int | None = None) -> list[GroupLine]:
        """New group lines; records are parsed only for steps >= parse_from_step (None: the last step read)."""
        data = read_chunk(self.path, self.offset, max_bytes)
        base, end = self.offset, data.rfind(b"\n") + 1
        lines: list[GroupLine] = []
        pos = 0
        while pos < end:
            nl = data.index(b"\n", pos)
            raw = data[pos:nl]
            start = base + pos
            pos = nl + 1
            if not raw.strip():
                continue
            m = _HEAD.match(raw)
            record = None
            if m:
                step, group = int(m.group(1)), int(m.group(2))
            else:  # another writer's key order: parse the whole line
                try:
                    record = json.loads(raw)
                    step, group = int(record["step"]), int(record["group"])
                except (ValueError, KeyError, TypeError):
                    self.skipped += 1
                    continue
            lines.append(GroupLine(step, group, start, len(raw), record))
        self.offset += end
        if lines:
            last = lines[-1].step if parse_from_step is None else parse_from_step
            for line in lines:
                if line.step >= last and line.record is None:
                    rel = line.offset - base
                    line.record = _parse(data[rel:rel + line.length])
                    if line.record is None:
                        self.skipped += 1
        return lines


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


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
                with open(self.path, "rb") as f:
                    for group, (offset, length) in ranges.items():
                        f.seek(offset)
                        rec = _parse(f.read(length))
                        if rec is not None:
                            cached[group] = rec
            except OSError:
                return []
            self._cache[step] = cached
        self._cache.move_to_end(step)
        while len(self._cache) > self._cache_steps:
            self._cache.popitem(last=False)
        return [cached[g] for g in sorted(cached)]
