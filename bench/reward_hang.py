"""Step time before and after a user reward hangs (spins for ever) once, with the tiny preset.

    PYTHONPATH=. .venv/bin/python bench/reward_hang.py                 # this tree
    PYTHONPATH=. .venv/bin/python bench/reward_hang.py --tree OTHER    # another checkout, same box, for a ratio

The reward spins in a busy loop on step --hang-step. Prints the mean step time
of the steps before it (the first step, warm-up, left out) and after it, and
their ratio. A reward running in an abandoned thread keeps spinning and
holding the GIL, so the steps after it run slower; one in a worker process is
killed at its deadline, so they don't.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REWARD = """
def spin(completions, trainer_state=None, **kwargs):
    if getattr(trainer_state, "global_step", None) == {hang}:
        while True:
            pass
    return [len(c[0]["content"]) / 100.0 for c in completions]
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to run")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--hang-step", type=int, default=4, help="the step whose reward call spins (>= 3)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "spin.py").write_text(REWARD.format(hang=args.hang_step - 1))  # global_step counts finished steps
        (d / "p.toml").write_text('extends = "tiny"\n[rewards]\ncorrectness = 1.0\n"spin.py:spin" = 1.0\n')
        run = d / "run"
        env = dict(os.environ, PYTHONPATH=str(args.tree), HF_HUB_OFFLINE="1")
        proc = subprocess.run(
            [
                sys.executable,
                "-P",
                "-m",
                "grpo_tui.engine",
                "train",
                "--preset",
                str(d / "p.toml"),
                "--run-dir",
                str(run),
                "--max-steps",
                str(args.steps),
            ],
            cwd=args.tree,
            env=env,
            capture_output=True,
            text=True,
        )
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    times = {e["step"]: e["step_time_s"] for e in events if e.get("type") == "step"}
    failures = [e for e in events if e.get("type") == "reward_failure"]
    before = [times[s] for s in range(2, args.hang_step) if s in times]
    after = [times[s] for s in range(args.hang_step + 1, args.steps + 1) if s in times]
    print(f"tree {args.tree}: exit {proc.returncode}, step times {times}")
    print(f"reward failures: {[(f.get('reward'), f.get('kind'), f.get('count')) for f in failures]}")
    if before and after:
        b, a = statistics.mean(before), statistics.mean(after)
        print(f"before the hang {b:.2f} s/step, after {a:.2f} s/step, ratio after/before {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
