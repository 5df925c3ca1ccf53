"""How fast is the one fold of the event stream (rundir.state)? Side by side with the folds it replaced.

The folds it replaced (tui/components/run_model.py RunModel, the browser's run-list summary) are
read from git at commit 7b4dcd8 and run in the same process on the same synthetic logs (written with
the engine's writers, tests/support/synthetic.py), interleaved, best of N:

  whole log   folding a 2000-step log at once (attaching to a long run)
  live        the same, two events per apply (what the dashboard does while a run streams)
  run list    fold_run over 30 run directories (the browser's run picker: head and tail of each log)

    .venv/bin/python bench/fold.py [--steps 2000] [--runs 30] [--repeat 9]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):  # tests/: the synthetic run writer is a test helper the bench borrows
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from support.synthetic import write_synthetic_run  # noqa: E402

from grpo_tui.rundir.events import read_events  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402
from grpo_tui.rundir.state import RunState, fold_run  # noqa: E402

BASE = "7b4dcd8"


def _module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _old(rel: str, name: str, tmp: Path) -> Any:
    src = subprocess.run(["git", "show", f"{BASE}:{rel}"], cwd=ROOT, capture_output=True, text=True, check=True)
    path = tmp / f"{name}.py"
    path.write_text(src.stdout)
    return _module(name, path)


def best_of(a: Callable[[], Any], b: Callable[[], Any], repeat: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeat):  # interleaved, so load on a shared machine hits both alike
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fold-bench-"))
    old_model = _old("tui/components/run_model.py", "old_run_model", tmp)
    old_runs = _old("tui/browser/runs.py", "old_runs", tmp)
    for i in range(args.runs):
        write_synthetic_run(
            tmp / "runs" / f"r{i:03d}", args.steps if i == 0 else 300, max_steps=args.steps, G=2, groups=1
        )
    events = read_events(RunDir(tmp / "runs" / "r000").events)

    def live(cls: type) -> None:
        m = cls()
        for i in range(0, len(events), 2):
            m.apply(events[i : i + 2])

    a, b = best_of(lambda: old_model.RunModel().apply(events), lambda: RunState().apply(events), args.repeat)
    print(f"whole log ({len(events)} events): RunModel {a * 1e3:.1f} ms, RunState {b * 1e3:.1f} ms ({b / a:.2f}x)")
    a, b = best_of(lambda: live(old_model.RunModel), lambda: live(RunState), args.repeat)
    print(f"live (2 events per apply):      RunModel {a * 1e3:.1f} ms, RunState {b * 1e3:.1f} ms ({b / a:.2f}x)")
    dirs = sorted((tmp / "runs").iterdir())
    a, b = best_of(
        lambda: [old_runs.summarize_run(d) for d in dirs], lambda: [fold_run(d) for d in dirs], max(3, args.repeat // 2)
    )
    print(
        f"run list ({len(dirs)} runs):            summarize_run {a * 1e3:.1f} ms, fold_run {b * 1e3:.1f} ms "
        f"({b / a:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
