"""Driving the Textual dashboard in Pilot tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any


def dashboard(run: Path, **kw: Any) -> Any:
    """The dashboard on `run`, polling fast so a test sees each write within a few frames."""
    from grpo_tui.tui.app import Dashboard

    return Dashboard(run, poll_interval=0.05, idle_interval=0.1, **kw)


async def wait_for(pilot: Any, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until predicate() holds; fail naming `what` after `timeout` seconds (generous: the suite
    shares a small machine, and a passing wait returns as soon as predicate() holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")


def control_commands(control: Path) -> list[str]:
    """The commands waiting in a control directory, oldest first."""
    return [json.loads(p.read_text())["command"] for p in sorted(control.glob("*.json"))]


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)
