"""Reading a run's rollouts for the browser, off the app's thread (no Textual)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path

from grpo_tui.rundir.rollouts import RolloutReader, Rollouts


def open_snapshot(run_dir: Path) -> tuple[RolloutReader, Rollouts, float]:
    """Read a run's rollouts as they are now: (reader to keep polling with, snapshot, seconds)."""
    t0 = time.perf_counter()
    reader = RolloutReader(run_dir)
    snap = Rollouts(reader.read_new(), reader.report)
    snap.summary()
    return reader, snap, time.perf_counter() - t0


def prefetch(run_dir: Path) -> Future:
    """Start reading in a plain thread now, so the read overlaps Textual's start-up."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(open_snapshot(run_dir))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on it
            fut.set_exception(e)

    threading.Thread(target=run, name="rollouts-prefetch", daemon=True).start()
    return fut
