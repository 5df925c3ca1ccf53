"""Waiting, with a deadline, for a child process to make something true."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpo_tui.rundir.event_reader import EventTail, read_events


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll predicate() until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_event(events: Path, predicate: Callable[[dict], Any], timeout: float = 120.0) -> dict:
    """The newest event in the log `events` for which predicate(event) holds, once there is one.

    On timeout the assertion shows the log's last events, which usually say what the engine did instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in read_events(events) if predicate(e)]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError([(e["type"], e.get("state"), e.get("step")) for e in read_events(events)][-8:])


def take_event(tail: EventTail, seen: list[dict], predicate: Callable[[dict], Any], timeout: float = 90.0) -> dict:
    """The first event for which predicate(event) holds, read through `tail` into `seen` (the caller's list of
    events not yet taken), once there is one. It is removed from `seen`, so the next call finds a later one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.extend(tail.read_new())
        for ev in seen:
            if predicate(ev):
                seen.remove(ev)
                return ev
        time.sleep(0.05)
    raise AssertionError(f"timed out; last events: {[(e['type'], e.get('state'), e.get('step')) for e in seen[-8:]]}")
