"""Run the project's commands in child processes, as a user would, with the test environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from support.paths import REPO


class TinyRun(NamedTuple):
    """A finished headless run: its directory, the `grpo-tui --no-ui` process result and its wall time.

    Unpacks as (dir, proc, seconds)."""

    dir: Path
    proc: subprocess.CompletedProcess
    seconds: float


def engine_env() -> dict[str, str]:
    """The environment a child engine gets: offline, quiet tokenizers, unbuffered output (so logs arrive live)."""
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")


def run_cli(
    args: list[str], timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <args>` in a child process (args usually start with "-m"), capturing its output as text.

    `env`: variables set on top of this process's environment."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
    )


def write_preset(path: Path, text: str) -> Path:
    """Write a preset file and return its path (for `--preset PATH`)."""
    path.write_text(text)
    return path


def run_engine(
    args: list[str], timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -P -m grpo_tui.engine train <args>`: the engine alone, as the launcher starts it."""
    return run_cli(["-P", "-m", "grpo_tui.engine", "train", *args], timeout=timeout, cwd=cwd, env=env)


def run_grpo_tui(args: list[str], timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`grpo-tui <args>` (as `python -m grpo_tui.tui.cli`)."""
    return run_cli(["-m", "grpo_tui.tui.cli", *args], timeout=timeout, cwd=cwd)
