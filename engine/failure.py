"""What a failed training run writes: one short reason, the traceback's end, and a run_end the UIs can trust.

The failure path runs on whatever state the failure left: a full disk, a half-written checkpoint, a watcher
thread still polling. Every write here is allowed to fail (`quietly`) so the next one still gets its chance.
"""

from __future__ import annotations

import errno
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from grpo_tui.rundir.checkpoints import checkpoint_unfinished, find_checkpoints
from grpo_tui.rundir.errors import EXIT_FAILED
from grpo_tui.rundir.layout import RunDir

TRACEBACK_CHARS = 8000  # the error event keeps the end of a traceback: short enough to write on a nearly full disk
# torch's words for a short write in its zip writer: on a disk with almost no room left they mean "disk full"
TORCH_SHORT_WRITE = ("basic_ios", "failed writing", "unexpected pos")
NEARLY_FULL_BYTES = 16 << 20


def _os_error(exc: BaseException | None) -> OSError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def describe_failure(exc: BaseException, run: RunDir) -> str:
    """One short line for the error event: "no space left on device while writing checkpoint-12".

    torch reports a full disk as "basic_ios::clear", "PytorchStreamWriter failed" or
    "[enforce fail at inline_container.cc] unexpected pos" (a short write in the zip
    writer), so with one of those a disk with almost no space left counts as full. An unfinished newest
    checkpoint names what was being written (and is removed: it can't be resumed
    from, and its space lets the failure be recorded).
    """
    os_err = _os_error(exc)
    text = f"{type(exc).__name__}: {exc}"
    try:
        free = shutil.disk_usage(run.root).free
    except OSError:
        free = None
    full = (
        (os_err is not None and os_err.errno == errno.ENOSPC)
        or "No space left" in text
        or (free is not None and free < NEARLY_FULL_BYTES and any(m in text for m in TORCH_SHORT_WRITE))
    )
    lookup = find_checkpoints(run.checkpoints)
    unfinished = [p for p, _ in lookup.skipped_after(lookup.latest) if checkpoint_unfinished(p)]
    where = f" while writing {unfinished[-1].name}" if unfinished else ""
    if full:
        for p in unfinished:
            shutil.rmtree(p, ignore_errors=True)
        return f"no space left on device{where} (in {run.root})"
    if os_err is not None:
        target = f" ({os_err.filename})" if os_err.filename else ""
        return f"{os_err.strerror or type(os_err).__name__}{where}{target}"[:500]
    return (text + where)[:500]


def quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Call fn; on a full disk (or any OS error) carry on: the failure path must reach run_end."""
    try:
        fn(*args, **kwargs)
        return True
    except (OSError, ValueError):
        return False


def record_failure(exc: BaseException, run: RunDir, events: Any, watcher: Any, step: int, t0: float) -> int:
    """Write the failure (error, state `failed`, run_end) as far as the disk allows; returns the exit code.

    Call from inside the `except` block that caught `exc`: the traceback is the one being handled.
    """
    tb = traceback.format_exc()
    message = describe_failure(exc, run)
    quietly(print, tb, file=sys.stderr, flush=True)
    quietly(watcher.close, "the run failed before its next step boundary")
    # each event is written whole or not at all; on a full disk the short form may still fit
    if not quietly(events.emit, "error", message=message, traceback=tb[-TRACEBACK_CHARS:]):
        quietly(events.emit, "error", message=message, traceback="")
    quietly(events.state, "failed", step=step, detail=message)
    quietly(
        events.emit, "run_end", status="failed", step=step, exit_code=EXIT_FAILED, elapsed_s=round(time.time() - t0, 2)
    )
    quietly(print, f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED
