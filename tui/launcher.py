"""Start the engine as a detached process (no Textual here; the headless path uses it too).

The engine runs in its own process session with no terminal stdin and its
output going to <run>/engine.log, so a UI can quit or crash without taking
training down (and Ctrl-C in the terminal doesn't reach the engine: UIs send
a stop command instead).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from grpo_tui.engine.run import PREFLIGHT_LOG_ENV
from grpo_tui.rundir.layout import RunDir


def default_run_dir(preset: str, root: Path = Path("runs")) -> Path:
    stem = Path(preset).stem if preset.endswith(".toml") else preset
    return root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{stem}"


def engine_command(
    preset: str | None,
    run_dir: Path,
    max_steps: int | None = None,
    overrides: list[str] = (),
    resume: bool = False,
    restart: bool = False,
) -> list[str]:
    cmd = [sys.executable, "-P", "-m", "grpo_tui.engine", "train", "--run-dir", str(run_dir), "--log-to-run-dir"]
    if preset:
        cmd += ["--preset", preset]
    if max_steps is not None:
        cmd += ["--max-steps", str(max_steps)]
    for o in overrides:
        cmd += ["--set", o]
    if resume:
        cmd.append("--resume")
    if restart:
        cmd.append("--restart")
    return cmd


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def check_request(
    preset: str | None,
    run_dir: Path,
    max_steps: int | None = None,
    overrides: list[str] = (),
    resume: bool = False,
    restart: bool = False,
) -> str | None:
    """What the engine's pre-flight would refuse without loading anything heavy (unknown preset, bad --set,
    a run directory that already holds a run), as its message; None when the request looks fine.
    Run by the UIs before launching, so such mistakes fail in well under a second."""
    import argparse

    from grpo_tui.engine.run import check_request as engine_check
    from grpo_tui.rundir.errors import GrpoTuiError

    args = argparse.Namespace(
        preset=preset,
        run_dir=Path(run_dir),
        max_steps=max_steps,
        overrides=list(overrides),
        resume=resume,
        restart=restart,
    )
    try:
        engine_check(args)
    except GrpoTuiError as e:  # PresetError, UnsafeRunDir (a locked or foreign run directory)
        return str(e)
    return None


class EngineProcess:
    """A detached engine. Its pre-flight output (before engine.log exists) is kept in a temp file."""

    def __init__(self, proc: subprocess.Popen, run_dir: Path, preflight_log: Path, events_size: int = -1) -> None:
        self.proc, self.run = proc, RunDir(Path(run_dir))
        self.preflight_log = preflight_log
        self._preflight_text: str | None = None
        self.events_size = events_size  # events.jsonl's size before launch (-1: none): a resumed run's log exists

    def started(self) -> bool:
        """Whether this engine wrote to events.jsonl (an engine refused in pre-flight writes nothing)."""
        return _size(self.run.events) > self.events_size

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def preflight_output(self) -> str:
        """What the engine printed before it took over engine.log (its pre-flight error, if any).

        Read once, then the temporary file is removed (an engine that started removes it itself,
        after copying it into engine.log).
        """
        if self._preflight_text is None:
            try:
                self._preflight_text = self.preflight_log.read_text(errors="replace")
                self.preflight_log.unlink()
            except OSError:
                self._preflight_text = self._preflight_text or ""
        return self._preflight_text

    def wait_started(self, timeout: float = 120.0) -> bool:
        """Wait until the engine wrote events.jsonl, or exited. True if the run started."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.started():
                return True
            if self.proc.poll() is not None:
                return self.started()
            time.sleep(0.05)
        return self.started()


def launch_engine(
    preset: str | None,
    run_dir: Path,
    max_steps: int | None = None,
    overrides: list[str] = (),
    resume: bool = False,
    restart: bool = False,
) -> EngineProcess:
    """Start `python -m grpo_tui.engine train` detached (own session, no stdin, output to engine.log)."""
    events_size = _size(RunDir(Path(run_dir)).events)
    fd, log_path = tempfile.mkstemp(prefix="grpo-tui-preflight-", suffix=".log")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONSAFEPATH="1", **{PREFLIGHT_LOG_ENV: log_path})
    proc = subprocess.Popen(
        engine_command(preset, run_dir, max_steps, overrides, resume, restart),
        stdin=subprocess.DEVNULL,
        stdout=fd,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    os.close(fd)
    return EngineProcess(proc, run_dir, Path(log_path), events_size)
