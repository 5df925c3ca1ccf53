"""Fixtures, found by pytest without imports. Helpers live in tests/support. Nothing here may reach the network:
the hub is off in CI."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Set before anything imports transformers/datasets, so nothing waits on the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support.paths import FIXTURES  # noqa: E402
from support.processes import TinyRun, run_grpo_tui, write_preset  # noqa: E402

if TYPE_CHECKING:  # imported where used: a broken rundir module fails its own tests, not collection
    from support.synthetic import SyntheticRun


@pytest.fixture(scope="session")
def test_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset plus a user reward that varies (so advantages are non-zero) and one that crashes."""
    d = tmp_path_factory.mktemp("preset")
    return write_preset(
        d / "tiny-test.toml",
        f"""
extends = "tiny"
[rewards]
correctness = 1.0
xmlcount = 1.0
"{FIXTURES / "user_rewards.py"}:distinct_chars" = 1.0
"{FIXTURES / "user_rewards.py"}:crashy" = 0.5
""",
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, test_preset: Path) -> TinyRun:
    """A real 3-step headless run of `test_preset`, recorded once per session. Tests read it and never write
    to it (one that resumes it works on a copy); test_engine checks the run itself succeeded."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    t0 = time.time()
    proc = run_grpo_tui(
        [
            "--no-ui",
            "--preset",
            str(test_preset),
            "--max-steps",
            "3",
            "--run-dir",
            str(run_dir),
        ],
        timeout=300,
    )
    return TinyRun(run_dir, proc, time.time() - t0)


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Iterator[Callable[..., SyntheticRun]]:
    """Factory: synthetic_run(steps=5, alive=False, finished=True, **SyntheticRun options) -> SyntheticRun,
    its writers left open (closed after the test). alive: this test process plays the engine."""
    from support.synthetic import SyntheticRun

    made: list[SyntheticRun] = []

    def make(steps: int = 5, *, alive: bool = False, finished: bool = True, **kw: Any) -> SyntheticRun:
        run = SyntheticRun(tmp_path / f"run{len(made)}", **kw)
        run.start(pid=os.getpid() if alive else 0)
        for _ in range(steps):
            run.write_step()
        if finished:
            run.finish()
        if alive:
            run.run.pid_file.write_text(str(os.getpid()))
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()
