"""Which checkpoints of a run are usable: the one definition of a complete checkpoint.

GRPO resume, the SFT stage and eval's RUN@STEP all ask `find_checkpoints`, so they
agree on what a resume may start from and what it passed over.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from grpo_tui.rundir.names import ADAPTER_CONFIG_NAME, CHECKPOINT_PREFIX, CONFIG_NAME, TRAINER_STATE

_CHECKPOINT_RE = re.compile(re.escape(CHECKPOINT_PREFIX) + r"(\d+)")


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint directory can't be used, or None if it is complete.

    Complete means: trainer_state.json (written last by the trainer) parses and
    names its step, and the weights' config (config.json, or adapter_config.json
    for LoRA) is there.
    """
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "unfinished (no trainer_state.json)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"damaged trainer_state.json ({type(e).__name__}: {e})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "damaged trainer_state.json (no global_step)"
    if not ((path / CONFIG_NAME).is_file() or (path / ADAPTER_CONFIG_NAME).is_file()):
        return "no config.json or adapter_config.json"
    return None


@dataclass
class CheckpointLookup:
    usable: dict[int, Path] = field(default_factory=dict)  # step -> complete checkpoint
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # newer-or-not, what was wrong

    @property
    def latest(self) -> Path | None:
        return self.usable[max(self.usable)] if self.usable else None

    def skipped_after(self, path: Path | None) -> list[tuple[Path, str]]:
        """Unusable checkpoints newer than `path` (the ones a resume falls back past)."""
        step = _step_of(path) if path is not None else -1
        return [(p, why) for p, why in self.skipped if _step_of(p) > step]


def _step_of(path: Path) -> int:
    m = _CHECKPOINT_RE.fullmatch(path.name)
    return int(m.group(1)) if m else -1


def checkpoint_step(path: Path) -> int | None:
    """N for a directory named checkpoint-N, else None."""
    step = _step_of(Path(path))
    return step if step >= 0 else None


def checkpoint_path(directory: Path, step: int) -> Path:
    """Where the trainer writes the checkpoint of `step` in a checkpoints directory."""
    return Path(directory) / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_unfinished(path: Path) -> bool:
    """The trainer had not finished writing this checkpoint (it writes trainer_state.json last)."""
    return not (Path(path) / TRAINER_STATE).exists()


def find_checkpoints(directory: Path) -> CheckpointLookup:
    """Every checkpoint-N in `directory`: the complete ones by step, the others with the reason.

    The one place that decides what a usable checkpoint is (GRPO resume, the SFT
    stage, eval's RUN@STEP all call it).
    """
    out = CheckpointLookup()
    try:
        entries = sorted(Path(directory).iterdir())
    except OSError:
        return out
    for p in entries:
        m = _CHECKPOINT_RE.fullmatch(p.name)
        if not m or p.is_symlink() or not p.is_dir():
            continue
        why = checkpoint_problem(p)
        if why:
            out.skipped.append((p, why))
        else:
            out.usable[int(m.group(1))] = p
    out.skipped.sort(key=lambda x: _step_of(x[0]))
    return out
