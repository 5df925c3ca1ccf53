"""The flags that start (or continue) a training run, declared once.

Both `grpo-tui` (tui/cli.py) and the engine (`python -m grpo_tui.engine train`) take them: the UI passes them
through to the engine it launches, so the two must agree on names, types and meaning.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grpo_tui.rundir.names import RESTART_PREFIX


def add_train_flags(p: argparse.ArgumentParser, *, run_dir_required: bool, run_dir_default: str = "") -> None:
    """--preset/--config, --run-dir, --max-steps, --set, --resume, --restart and --device."""
    source = p.add_mutually_exclusive_group()
    default = (
        "optional with --resume"
        if run_dir_required
        else "default: the best preset for the detected GPU, cpu-demo without one"
    )
    source.add_argument("--preset", help=f"preset name (see `grpo-tui presets`) or a .toml path; {default}")
    # the same destination: a recipe is read into a preset, and everything after that is the same
    source.add_argument(
        "--config",
        dest="preset",
        metavar="RECIPE.yaml",
        help="a TRL recipe (the YAML `trl grpo --config` reads) instead of a preset; "
        "see docs/presets.md for how each key maps",
    )
    p.add_argument(
        "--run-dir",
        required=run_dir_required,
        type=Path,
        help="run directory to create (or continue with --resume)" + run_dir_default,
    )
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a preset value, e.g. --set train.learning_rate=1e-5 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    p.add_argument(
        "--restart",
        action="store_true",
        help="start the run in --run-dir over from step 0 under its config.json (when --resume finds no "
        "usable checkpoint): its event log is kept and appended to; checkpoints, rollouts and stage "
        f"outputs move to RUN_DIR/{RESTART_PREFIX}TIME/",
    )
    p.add_argument(
        "--device",
        choices=("cpu",),
        help="cpu: run the preset on the CPU with every other knob as written (a smoke test of a GPU "
        "preset); parts that need CUDA (vLLM, 4-bit, paged/8-bit optimizers, DeepSpeed) stop in "
        "pre-flight with the --set that replaces them",
    )
