"""The engine's rollout writer: one JSON line per group in rollouts.jsonl, an Arrow segment every few steps.

rollouts.jsonl is the record and the only file that must survive: appended and
flushed once per generation batch, crash-safe (a half-written last line is
ended before the next record, and readers skip it). Segments
(rundir/rollouts/segments.py) are a columnar index of it, rebuilt from it when
missing or damaged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from grpo_tui.rundir.private_io import open_private
from grpo_tui.rundir.rollouts.reader import RolloutTail
from grpo_tui.rundir.rollouts.records import CompletionRecord, GroupRecord, ReadReport, rollout_paths
from grpo_tui.rundir.rollouts.segments import Chunk, sealed_end, write_segment

SEGMENT_STEPS = 50  # seal a segment once the unsealed groups span this many steps
SEGMENT_BYTES = 32 << 20  # ... or this many bytes of JSONL, whichever comes first


class RolloutWriter:
    """The engine's writer: one JSON line per group, plus an Arrow segment every few steps.

    `flush()` is called once per generation batch; it makes the batch's lines
    durable in rollouts.jsonl and, when enough unsealed groups have piled up,
    seals them into a segment. Sealing never fails training: on any error the
    range simply stays JSONL-only.
    """

    def __init__(
        self, path_or_rundir: Path | str, *, segment_steps: int = SEGMENT_STEPS, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.path, self.segment_dir = rollout_paths(path_or_rundir)
        self.segment_steps, self.segment_bytes = segment_steps, segment_bytes
        self.segments_written = 0
        self.seal_errors: list[str] = []
        # never through a link, owner-only when created (rundir.private_io.open_private)
        self._f = os.fdopen(open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rollout log"), "ab")
        self._pos = self._f.seek(0, os.SEEK_END)
        if self._pos:
            with open(self.path, "rb") as f:
                f.seek(self._pos - 1)
                if f.read(1) != b"\n":
                    # a killed engine left half a line: end it so our first record starts on its own line
                    # (readers then skip that one damaged line instead of losing our record too)
                    self._f.write(b"\n")
                    self._f.flush()
                    self._pos += 1
        # Groups written since the last segment (a previous engine process's unsealed tail included),
        # kept so the next segment can be built without reading the file back.
        self._seg_start = sealed_end(self.segment_dir, self._pos)
        self._buffer: list[dict[str, Any]] = []
        if self._pos - self._seg_start > 2 * segment_bytes:
            # an old run written before segments: don't hold it all in the engine's memory;
            # that range stays JSONL-only (readers parse holes between segments)
            self._seg_start = self._pos
        elif self._seg_start < self._pos:
            self._buffer = RolloutTail(self.path, self._seg_start).read_records(self._pos, ReadReport())
        self._buffer_steps = {r["step"] for r in self._buffer if isinstance(r.get("step"), int)}

    def write(self, group: GroupRecord) -> None:
        """Append one group (durable at the next flush)."""
        record = group.to_dict()
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self._f.write(line)
        self._pos += len(line)
        self._buffer.append(record)
        self._buffer_steps.add(group.step)

    def write_group(
        self,
        step: int,
        group: int,
        prompt: str,
        gold: str,
        completions: list[CompletionRecord | dict[str, Any]],
        **extra: Any,
    ) -> None:
        """`write` from parts; completions may be CompletionRecords or dicts of the same fields."""
        comps = [c if isinstance(c, CompletionRecord) else CompletionRecord.from_dict(c) for c in completions]
        self.write(GroupRecord(step=step, group=group, prompt=prompt, gold=gold, completions=comps, extra=extra))

    def flush(self) -> None:
        self._f.flush()
        if self._buffer and (
            len(self._buffer_steps) >= self.segment_steps or self._pos - self._seg_start >= self.segment_bytes
        ):
            self.seal()

    def seal(self) -> Path | None:
        """Write the unsealed groups as a segment now (also done by flush and close)."""
        if not self._buffer:
            return None
        start, end, records = self._seg_start, self._pos, self._buffer
        self._buffer, self._buffer_steps, self._seg_start = [], set(), end
        try:
            self._f.flush()
            os.fsync(self._f.fileno())  # a segment must never describe bytes the JSONL lost
            chunk = Chunk.from_records(records, ReadReport())
            path = write_segment(self.segment_dir, start, end, chunk)
        except Exception as e:  # noqa: BLE001 - segments are an index; the JSONL already holds the data
            msg = f"rollout segment {start}-{end} not written ({type(e).__name__}: {e}); browsing reads the JSONL"
            self.seal_errors.append(msg)
            print(msg, file=sys.stderr, flush=True)
            return None
        self.segments_written += 1
        return path

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        self.seal()
        self._f.close()
