"""The control channel: commands from UIs to the engine through the run directory.

A command is one small JSON file in <run>/control/, written to a temporary
name and renamed into place so the engine never reads half a command. The
directory is created mode 0700 so only the owning user can steer the run. The
engine reads commands at step boundaries (and while paused), deletes each file
and acknowledges it with a "command" event carrying the same id. It refuses a
control directory that is a link or that others own or can write, and rejects
(as "invalid") a command file that is a link, not a regular file (a FIFO never blocks it: reads are
non-blocking), or that another user owns. A sender (`send_command`) applies the engine's checks before it writes.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from grpo_tui.rundir.errors import UnsafeRunDir
from grpo_tui.rundir.events import COMMANDS, Command
from grpo_tui.rundir.private_io import check_private_dir, file_mode, make_private_dir, open_private, ownership_problem


def ensure_control_dir(path: Path) -> None:
    """Create control/ owner-only, or check an existing one (UnsafeRunDir if it is a link or not ours)."""
    make_private_dir(Path(path), "control directory")


def send_command(control_dir: Path, command: Command | str, **args: Any) -> str:
    """Queue a command for the engine; returns its id (matched by the ack event).

    The same checks as the engine's before anything is written: the run directory and control/ must be this
    user's and writable by no one else, control/ must not be a link, and the command file is created new
    (never through a link) inside the directory that was checked. ControlRefused (exit 2) otherwise.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    control_dir = Path(control_dir)
    dfd = open_control_dir(control_dir)
    try:
        cid = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        body = json.dumps({"id": cid, "command": str(command), "args": args, "t": time.time()})
        tmp = f".{cid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode(), dir_fd=dfd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
            os.rename(tmp, f"{cid}.json", src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
    finally:
        os.close(dfd)
    return cid


class ControlRefused(UnsafeRunDir, PermissionError):
    """A run directory or control/ that fails the engine's checks: a usage error (exit 2) to the command line,
    and an OSError to callers that already handle a control/ they may not write."""


def open_control_dir(control_dir: Path) -> int:
    """A descriptor of a run's control/ that passed the engine's checks (the caller closes it).

    Raises ControlRefused (an UnsafeRunDir and a PermissionError) when the run directory or control/ belongs
    to someone else or others can write it, or control/ is a link or not a directory; FileNotFoundError when
    there is no control/.
    """
    try:
        return _open_checked(Path(control_dir))
    except UnsafeRunDir as e:
        raise ControlRefused(str(e)) from None


def _open_checked(control_dir: Path) -> int:
    root = control_dir.parent
    try:
        check_private_dir(root, "run directory", follow=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{root}: no such run directory") from None
    try:
        dfd = os.open(control_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(f"{control_dir}: no control directory; is this a run directory?") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link (O_NOFOLLOW) or a file: say what it is
            check_private_dir(control_dir, "control directory")
        raise
    try:
        problem = ownership_problem(os.fstat(dfd), control_dir, "control directory")
        if problem:
            raise UnsafeRunDir(problem)
    except BaseException:
        os.close(dfd)
        raise
    return dfd


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
            # O_NONBLOCK: a FIFO planted here must not hang the watcher (open_private then refuses it:
            # only a regular file is a command)
            with os.fdopen(open_private(p, os.O_RDONLY | os.O_NONBLOCK, "command file"), "rb") as f:
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
