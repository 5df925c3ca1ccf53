"""The rollout record: one group (G completions of one prompt) per line of rollouts.jsonl.

`GroupRecord` and `CompletionRecord` are the one definition of a line's fields;
the engine's recorder, the columnar readers (which hand records back as plain
dicts of this shape) and the tests all build them here. docs/rollouts.md
describes the fields for users.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from grpo_tui.rundir.names import ROLLOUTS_NAME, SCHEMA_VERSION, SEGMENTS_NAME


def _num(x: float | None) -> float | None:
    """Rewards are stored to 6 decimals; NaN and infinities are stored as null."""
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


# Per-token arrays of a completion: record field -> little-endian dtype. In rollouts.jsonl each is the
# base64 of the raw array (a JSON list of numbers would be several times the size); in segments, Arrow lists.
TOKEN_ARRAYS = {"token_ids": "<i4", "token_chars": "<u2", "token_logprobs": "<f2", "token_entropies": "<f2"}


def pack_array(a: np.ndarray | None, dtype: str) -> str | None:
    """An array as the base64 of its little-endian bytes (None stays None)."""
    if a is None:
        return None
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def unpack_array(s: Any, dtype: str) -> np.ndarray | None:
    """`pack_array` undone; None for anything that isn't such a string (an older or damaged record)."""
    if isinstance(s, np.ndarray):
        return s.astype(dtype, copy=False)
    if not isinstance(s, str):
        return None
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % np.dtype(dtype).itemsize:
        return None
    return np.frombuffer(raw, dtype=dtype).copy()


@dataclass(eq=False)
class CompletionRecord:
    """One completion of a group, as scored.

    The four per-token arrays are None in records written without them (older runs, a
    multi-process run, a loss that never computes per-token log-probabilities); when
    present they have `tokens` entries, one per completion token."""

    text: str  # the completion as the model wrote it
    extracted: str | None  # the answer found in the run's answer format; None: no answer found
    correct: bool  # extracted matches the gold answer (is_correct)
    rewards: dict[str, float | None]  # reward function name -> raw score (None: the function returned none)
    total: float | None  # the weighted sum of the rewards, what GRPO normalises
    advantage: float | None  # the group-normalised total the loss used
    tokens: int  # completion length in tokens
    truncated: bool  # cut at max_completion_length without an end token
    token_ids: np.ndarray | None = None  # int32: the completion's token ids
    # uint16: characters of `text` each token decoded to; they cover the end of `text` (a prefilled
    # start of the reply belongs to no token). None when the tokens' pieces don't add up to the text.
    token_chars: np.ndarray | None = None
    token_logprobs: np.ndarray | None = None  # float16: log-probability of each token under the policy
    token_entropies: np.ndarray | None = None  # float16: entropy (nats) of the distribution it was drawn from
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version doesn't know (kept)

    def to_dict(self) -> dict[str, Any]:
        """The JSONL shape (rewards, total and advantage rounded; NaN -> null; arrays base64, only when present)."""
        out = {
            "text": self.text,
            "extracted": self.extracted,
            "correct": self.correct,
            "rewards": {k: _num(v) for k, v in self.rewards.items()},
            "total": _num(self.total),
            "advantage": _num(self.advantage),
            "tokens": self.tokens,
            "truncated": self.truncated,
        }
        for name, dtype in TOKEN_ARRAYS.items():
            a = getattr(self, name)
            if a is not None:
                out[name] = pack_array(a, dtype)
        return {**out, **self.extra}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompletionRecord) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompletionRecord:
        known = {k: d.get(k) for k in COMPLETION_KEYS if k != "extra" and k not in TOKEN_ARRAYS}
        arrays = {k: unpack_array(d.get(k), dtype) for k, dtype in TOKEN_ARRAYS.items()}
        return cls(**known, **arrays, extra={k: v for k, v in d.items() if k not in COMPLETION_KEYS})


@dataclass
class GroupRecord:
    """One line of rollouts.jsonl: a prompt, its gold answer and its G scored completions."""

    step: int  # the optimizer step that trained on this group (1-based)
    group: int  # index of the group within its step
    prompt: str  # the question as asked (without the system prompt)
    gold: str  # the reference answer
    completions: list[CompletionRecord]
    v: int = SCHEMA_VERSION  # record schema version
    extra: dict[str, Any] = field(default_factory=dict)  # group fields this version doesn't know (kept)

    def to_dict(self) -> dict[str, Any]:
        # "v", "step", "group" lead every line: `line_key` reads them without parsing the line.
        return {
            "v": self.v,
            "step": self.step,
            "group": self.group,
            "prompt": self.prompt,
            "gold": self.gold,
            **self.extra,
            "completions": [c.to_dict() for c in self.completions],
        }

    def to_line(self) -> bytes:
        return (json.dumps(self.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupRecord:
        return cls(
            step=d["step"],
            group=d["group"],
            prompt=d.get("prompt", ""),
            gold=d.get("gold", ""),
            completions=[CompletionRecord.from_dict(c) for c in d.get("completions", [])],
            v=d.get("v", 1),
            extra={k: v for k, v in d.items() if k not in GROUP_KEYS},
        )


GROUP_KEYS = tuple(f.name for f in fields(GroupRecord) if f.name != "extra")
COMPLETION_KEYS = tuple(f.name for f in fields(CompletionRecord) if f.name != "extra")

# GroupRecord.to_dict writes "v", "step", "group" first; matching that prefix finds a line's step and
# group without parsing its completions (a long run's history is indexed in milliseconds).
_HEAD = re.compile(rb'^\{"v":\s*\d+,\s*"step":\s*(-?\d+),\s*"group":\s*(-?\d+)')


def line_key(raw: bytes) -> tuple[int, int, dict[str, Any] | None] | None:
    """(step, group, parsed record or None) of one line; None for a line that isn't a group record.

    The record is parsed only when the line doesn't start the way GroupRecord writes it
    (another writer's key order)."""
    m = _HEAD.match(raw)
    if m:
        return int(m.group(1)), int(m.group(2)), None
    record = parse_record(raw)
    if record is None:
        return None
    try:
        return int(record["step"]), int(record["group"]), record
    except (KeyError, TypeError, ValueError):
        return None


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """One line as a dict, or None when it isn't a JSON object."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def rollout_paths(path_or_rundir: Path | str) -> tuple[Path, Path]:
    """(rollouts.jsonl, segment directory) for a run directory or a rollouts.jsonl path."""
    p = Path(path_or_rundir)
    jsonl = p if p.suffix == ".jsonl" or p.is_file() else p / ROLLOUTS_NAME
    return jsonl, jsonl.parent / SEGMENTS_NAME


@dataclass
class ReadReport:
    """What was read and what was skipped, for the user (`messages`) and for tests."""

    segments: int = 0  # segments read
    segment_problems: list[str] = field(default_factory=list)  # unreadable/stale segments (re-read from JSONL)
    jsonl_bytes: int = 0  # bytes of JSONL parsed
    skipped: int = 0  # complete lines that were not JSON objects
    invalid: int = 0  # JSON objects without a step or a completions list
    newer: int = 0  # records of a newer schema version (read for the fields this reader knows)
    newest: int = 0
    partial: int = 0  # bytes of an unfinished last line (being written, or the engine died mid-write)
    missing: bool = False  # no rollouts.jsonl
    replaced: int = 0  # groups recorded again later (a resumed run redoes steps); the latest is shown

    def messages(self) -> list[str]:
        out = []
        if self.missing:
            out.append(
                "no rollouts.jsonl in this run directory" + (" (showing sealed segments only)" if self.segments else "")
            )
        if self.skipped:
            out.append(f"{self.skipped} damaged line(s) in rollouts.jsonl skipped")
        if self.invalid:
            out.append(f"{self.invalid} record(s) without step/completions skipped")
        if self.partial:
            out.append(
                f"unfinished last line ({self.partial} bytes) skipped: still being written, "
                "or the engine was killed mid-write"
            )
        if self.newer:
            out.append(
                f"{self.newer} record(s) from a newer schema (v{self.newest}; this reader knows "
                f"v{SCHEMA_VERSION}): read the fields it knows"
            )
        out.extend(self.segment_problems)
        if self.replaced:
            out.append(f"{self.replaced} group(s) were recorded again after a resume; showing the latest")
        return out
