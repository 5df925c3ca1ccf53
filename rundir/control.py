"""The control channel: commands from UIs to the engine through the run directory.

A command is one small JSON file in <run>/control/, written to a temporary
name and renamed into place so the engine never reads half a command. The
directory is created mode 0700 so only the owning user can steer the run. The
engine reads commands at step boundaries (and while paused), deletes each file
and acknowledges it with a "command" event carrying the same id. It refuses a
control directory that is a link or that others own or can write, and rejects
(as "invalid") a command file that is a link or that another user owns.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from grpo_tui.rundir.events import COMMANDS, Command
from grpo_tui.rundir.layout import UnsafeRunDir, make_private_dir, open_private


def ensure_control_dir(path: Path) -> None:
    """Create control/ owner-only, or check an existing one (UnsafeRunDir if it is a link or not ours)."""
    make_private_dir(Path(path), "control directory")


def send_command(control_dir: Path, command: Command | str, **args: Any) -> str:
    """Queue a command for the engine; returns its id (matched by the ack event)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    control_dir = Path(control_dir)
    if not control_dir.is_dir():
        raise FileNotFoundError(f"{control_dir}: no control directory; is this a run directory?")
    cid = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"id": cid, "command": str(command), "args": args, "t": time.time()})
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
            with os.fdopen(open_private(p, os.O_RDONLY, "command file"), "rb") as f:
                cmd = json.loads(f.read(1 << 20))
            if not isinstance(cmd, dict) or cmd.get("command") not in COMMANDS:
                cmd = {"id": name[:-5], "command": Command.INVALID.value, "args": {"raw": str(cmd)[:200]}}
        except UnsafeRunDir as e:  # a link or another user's file: never acted on (unlink removes only the entry)
            cmd = {"id": name[:-5], "command": Command.INVALID.value, "args": {"error": str(e)}}
        except (OSError, ValueError) as e:
            cmd = {"id": name[:-5], "command": Command.INVALID.value, "args": {"error": str(e)}}
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        out.append(cmd)
    return out
