"""Where things live in a run directory: the contract between engine and UIs.

The engine is the only writer; every reader (dashboard, headless printer,
browser, tests) opens the same files. See docs/run-directory.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1


@dataclass
class RunDir:
    root: Path
    switch_to: str | None = None  # set by the engine when the run continues under another preset

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts.jsonl"

    @property
    def engine_log(self) -> Path:
        return self.root / "engine.log"

    @property
    def control(self) -> Path:
        return self.root / "control"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def trackers(self) -> Path:
        """TensorBoard event files and W&B offline runs, when [train] report_to names them."""
        return self.root / "trackers"

    @property
    def pid_file(self) -> Path:
        return self.root / "engine.pid"

    def exists(self) -> bool:
        return self.events.exists()

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that finished writing (has trainer_state.json)."""
        best: tuple[int, Path] | None = None
        if self.checkpoints.is_dir():
            for p in self.checkpoints.iterdir():
                m = re.fullmatch(r"checkpoint-(\d+)", p.name)
                if m and (p / "trainer_state.json").exists():
                    if best is None or int(m.group(1)) > best[0]:
                        best = (int(m.group(1)), p)
        return best[1] if best else None

    def engine_pid(self) -> int | None:
        """The pid of a live engine writing this run, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid
