"""Saved rollouts (rollouts.jsonl): one JSON line per group, appended per step.

A group is the G completions of one prompt. Each line holds the prompt, the
gold answer and, for every completion: text, extracted answer, reward per
function, weighted total, advantage, token length, truncated flag and whether
the extracted answer matches the gold. Lines are written whole and flushed, so
a killed engine leaves at most one partial last line, which readers skip.
Rollout files are only ever parsed as JSON: never executed or unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.rundir import SCHEMA_VERSION


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


class RolloutWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write_group(self, step: int, group: int, prompt: str, gold: str,
                    completions: list[dict[str, Any]], **extra: Any) -> None:
        record = {"v": SCHEMA_VERSION, "step": step, "group": group, "prompt": prompt, "gold": gold,
                  **extra, "completions": [
                      {**c, "rewards": {k: _num(v) for k, v in c["rewards"].items()},
                       "total": _num(c["total"]), "advantage": _num(c["advantage"])}
                      for c in completions]}
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_rollouts(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(groups, lines skipped). Skips a half-written or corrupt line instead of failing."""
    from engine.events import parse_lines
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a finished file's last line may lack its newline; parse it if it is whole JSON
    groups, _, skipped = parse_lines(data)
    return groups, skipped
