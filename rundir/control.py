"""The control channel: commands from UIs to the engine through the run directory.

A command is one small JSON file in <run>/control/, written to a temporary
name and renamed into place so the engine never reads half a command. The
directory is created mode 0700 so only the owning user can steer the run. The
engine reads commands at step boundaries (and while paused), deletes each file
and acknowledges it with a "command" event carrying the same id.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

COMMANDS = ("pause", "resume", "checkpoint", "stop", "switch_preset",
            "set")  # set: live knobs (rundir/knobs.py), e.g. send_command(d, "set", learning_rate=1e-5)


def ensure_control_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def send_command(control_dir: Path, command: str, **args: Any) -> str:
    """Queue a command for the engine; returns its id (matched by the ack event)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    control_dir = Path(control_dir)
    if not control_dir.is_dir():
        raise FileNotFoundError(f"{control_dir}: no control directory; is this a run directory?")
    cid = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"id": cid, "command": command, "args": args, "t": time.time()})
    tmp = control_dir / f".{cid}.tmp"
    tmp.write_text(body)
    os.rename(tmp, control_dir / f"{cid}.json")
    return cid


def take_commands(control_dir: Path) -> list[dict[str, Any]]:
    """Read and remove queued commands, oldest first. Malformed files are returned as 'invalid'."""
    out = []
    try:
        names = sorted(p for p in os.listdir(control_dir) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    for name in names:
        p = Path(control_dir) / name
        try:
            cmd = json.loads(p.read_text())
            if not isinstance(cmd, dict) or cmd.get("command") not in COMMANDS:
                cmd = {"id": name[:-5], "command": "invalid", "args": {"raw": str(cmd)[:200]}}
        except (OSError, json.JSONDecodeError) as e:
            cmd = {"id": name[:-5], "command": "invalid", "args": {"error": str(e)}}
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        out.append(cmd)
    return out
