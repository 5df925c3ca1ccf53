"""Fixtures and helpers for the dashboard tests (imported by tests/test_tui*.py).

- `tiny_run`: a run directory recorded by the real engine (tiny random model, 3 steps), once per session.
- `synthetic_run`: a run directory written with the engine's own writers (bench/tui_cpu.py), fast and
  deterministic, for the cases a real engine can't be made to produce on demand (failures, acks).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("tui_cpu_bench", ROOT / "bench" / "tui_cpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()
SyntheticRun = bench.SyntheticRun
write_synthetic_run = bench.write_synthetic_run


def engine_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3-step run of the tiny preset (about 20-40 s on a 2-core CPU)."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "grpo_tui.engine",
            "train",
            "--preset",
            "tiny",
            "--run-dir",
            str(run),
            "--max-steps",
            "3",
        ],
        cwd=ROOT,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return run


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Callable[..., Any]:
    """Factory: synthetic_run(steps=5, alive=False, finished=True) -> SyntheticRun (its writers left open)."""
    made: list[Any] = []

    def make(steps: int = 5, *, alive: bool = False, finished: bool = True, **kw: Any) -> Any:
        run = SyntheticRun(tmp_path / f"run{len(made)}", **kw)
        run.start(pid=os.getpid() if alive else 0)
        for _ in range(steps):
            run.write_step()
        if finished:
            run.finish()
        if alive:  # this test process plays the engine
            run.run.pid_file.write_text(str(os.getpid()))
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


async def wait_for(pilot: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until predicate() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")


def control_commands(control: Path) -> list[str]:
    import json

    return [json.loads(p.read_text())["command"] for p in sorted(control.glob("*.json"))]


def run_coroutine(coro: Any) -> Any:
    return asyncio.run(coro)
