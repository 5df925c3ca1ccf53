"""The runs under runs/, summarised for the browser's run picker (no Textual here).

Each summary comes from config.json (preset, model) and events.jsonl (start
time, steps done, last mean reward, state). Only the head and the tail of a
long event log are read, so listing many long runs stays quick.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rundir.events import parse_lines
from rundir.layout import SCHEMA_VERSION, RunDir

HEAD_BYTES = 64 << 10
TAIL_BYTES = 256 << 10
ACTIVE = ("starting", "loading_model", "running", "pausing", "paused", "checkpointing", "stopping")


@dataclass
class RunSummary:
    path: Path
    started: float | None = None  # unix time of the first run_start (else config.json's mtime)
    preset: str = "?"
    model: str = "?"
    step: int | None = None  # last step done
    max_steps: int | None = None
    reward: float | None = None  # mean reward of the last step
    state: str = "?"  # the engine's last state; "gone" when it was active but no engine lives
    notes: list[str] = field(default_factory=list)  # what could not be read

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)) if self.started else "?"


def _read_events(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """(events from the head and the tail of the log, damaged lines, whether the middle was skipped)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size <= HEAD_BYTES + TAIL_BYTES:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    data = data[: data.rfind(b"\n") + 1]  # half-written last event
                events, _, skipped = parse_lines(data)
                return events, skipped, False
            head = f.read(HEAD_BYTES)
            f.seek(size - TAIL_BYTES)
            tail = f.read()
    except OSError:
        return [], 0, False
    head = head[: head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1:]  # the first line of the tail block is cut
    a, _, s1 = parse_lines(head)
    b, _, s2 = parse_lines(tail)
    return a + b, s1 + s2, True


def summarize_run(path: Path) -> RunSummary:
    run = RunDir(Path(path))
    s = RunSummary(path=Path(path))
    try:
        cfg = json.loads(run.config.read_text(encoding="utf-8"))
        s.preset = str((cfg.get("preset") or {}).get("name") or "?")
        s.model = str((cfg.get("model") or {}).get("name") or "?")
        s.max_steps = (cfg.get("train") or {}).get("max_steps")
        s.started = run.config.stat().st_mtime
    except FileNotFoundError:
        s.notes.append("no config.json")
    except (OSError, ValueError, AttributeError) as e:
        s.notes.append(f"config.json unreadable ({type(e).__name__})")
    if not run.events.exists():
        s.notes.append("no events.jsonl")
        s.state = "no events" if not run.rollouts.exists() else "?"
        return s
    events, skipped, _ = _read_events(run.events)
    if skipped:
        s.notes.append(f"{skipped} damaged event line(s) skipped")
    newer = [e.get("v") for e in events if isinstance(e.get("v"), int) and e["v"] > SCHEMA_VERSION]
    if newer:
        s.notes.append(f"{len(newer)} event(s) from a newer schema (v{max(newer)}): read the fields this knows")
    first_start = True
    for ev in events:
        kind = ev.get("type")
        if kind == "run_start":
            if first_start and isinstance(ev.get("t"), (int, float)):
                s.started = float(ev["t"])
                first_start = False
            s.preset = str(ev.get("preset") or s.preset)
            s.model = str(ev.get("model") or s.model)
            if isinstance(ev.get("max_steps"), int):
                s.max_steps = ev["max_steps"]
        elif kind == "step":
            if isinstance(ev.get("step"), int):
                s.step = ev["step"]
            if isinstance(ev.get("max_steps"), int):
                s.max_steps = ev["max_steps"]
            reward = (ev.get("metrics") or {}).get("reward") if isinstance(ev.get("metrics"), dict) else None
            s.reward = float(reward) if isinstance(reward, (int, float)) else s.reward
        elif kind == "state" and isinstance(ev.get("state"), str):
            s.state = ev["state"]
        elif kind == "run_end" and isinstance(ev.get("status"), str):
            s.state = ev["status"]
    if s.state in ACTIVE and run.engine_pid() is None:
        s.state = "gone"  # active by its log, but no engine process: killed or crashed
    return s


def list_runs(runs_root: Path) -> list[RunSummary]:
    """Run directories directly under runs_root (those with events.jsonl, config.json or rollouts), newest first."""
    try:
        dirs = [p for p in Path(runs_root).iterdir() if p.is_dir()]
    except OSError:
        return []
    runs = [summarize_run(p) for p in dirs
            if any((p / f).exists() for f in ("events.jsonl", "config.json", "rollouts.jsonl", "rollouts"))]
    return sorted(runs, key=lambda r: (r.started or 0.0, r.name), reverse=True)
