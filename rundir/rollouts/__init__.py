"""Saved rollouts: every group GRPO scored, append-only, crash-safe and fast to browse.

Two files hold them (docs/rollouts.md has the full story):

- ``rollouts.jsonl``: the record. One JSON line per group (G completions of one
  prompt, `records.GroupRecord`), appended and flushed once per generation
  batch. It is the only file that must survive; everything else can be rebuilt
  from it. Readers skip a half-written last line (the engine was killed
  mid-write) and count it. Each completion may carry per-token arrays (ids,
  characters of its text, log-probabilities, entropies; `records.TOKEN_ARRAYS`).
- ``rollouts/seg-<start>-<end>.arrow``: a columnar copy of the byte range
  [start, end) of rollouts.jsonl, written every ``segment_steps`` steps as an
  Arrow IPC file (zstd), so opening a 128,000-completion run reads ~40 segments
  and parses only the JSONL lines after the last segment. A missing, damaged or
  stale segment just means that byte range is parsed from the JSONL.

Modules: `records` (the record types), `writer` (the engine's writer),
`segments` (the Arrow codec and columns), `reader` (the one tailing reader,
the dashboard's step index, the browser's columnar reader), `query` (the
`Rollouts` snapshot: filters, per-step summaries, export).
"""

from grpo_tui.rundir.rollouts.query import RolloutFilter, Rollouts, Selection, StepSummary, parse_range
from grpo_tui.rundir.rollouts.reader import (
    GroupLine,
    RolloutIndex,
    RolloutReader,
    RolloutTail,
    open_rollouts,
    read_rollouts,
)
from grpo_tui.rundir.rollouts.records import (
    COMPLETION_KEYS,
    GROUP_KEYS,
    CompletionRecord,
    GroupRecord,
    ReadReport,
    rollout_paths,
)
from grpo_tui.rundir.rollouts.segments import SEGMENT_FORMAT, Chunk, list_segments, read_segment, write_segment
from grpo_tui.rundir.rollouts.writer import SEGMENT_BYTES, SEGMENT_STEPS, RolloutWriter

__all__ = [
    "COMPLETION_KEYS",
    "GROUP_KEYS",
    "SEGMENT_BYTES",
    "SEGMENT_FORMAT",
    "SEGMENT_STEPS",
    "Chunk",
    "CompletionRecord",
    "GroupLine",
    "GroupRecord",
    "ReadReport",
    "RolloutFilter",
    "RolloutIndex",
    "RolloutReader",
    "RolloutTail",
    "RolloutWriter",
    "Rollouts",
    "Selection",
    "StepSummary",
    "list_segments",
    "open_rollouts",
    "parse_range",
    "read_rollouts",
    "read_segment",
    "rollout_paths",
    "write_segment",
]
