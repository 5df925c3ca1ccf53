"""Does the CPU demo learn, and how soon? Minutes to the learning signal, step-time breakdown, held-out accuracy.

Runs the cpu-demo for two seeds (or reads finished runs with --runs) and prints,
per run: wall minutes, the first step at which the reward of the last fifth of
the steps so far beats the first fifth by more than 2 standard errors (and the
minutes to it), the same test over the whole run, the step-time breakdown from
`phase_s`, and greedy held-out accuracy before and after (the run's in-run
`eval` events) with Wilson 95% intervals, and those evals' items counted by the
problem's operation (add, sub, mul, div): which kinds the run learned and which
it unlearned. `--baseline` also runs the previous
cpu-demo settings (one prompt of G=8 a step; every prompt encoded G times; no
stop string; no fast CPU decoding; auto threads from the 1-minute load average
instead of the cores idle now) for as many steps,
with the same evals, interleaved seed by seed with the new ones, so the ratio
comes from one run of the bench on one machine load. Minutes leave out the
bench's own held-out evals (2-3 minutes each for 100 problems).

  python bench/demo_learning.py                         # the preset as shipped, seeds 1 and 2 (36 steps, two evals)
  python bench/demo_learning.py --baseline              # ... and the previous settings beside them
  python bench/demo_learning.py --runs runs/s1 runs/s2  # read finished runs, run nothing
  python bench/demo_learning.py --runs runs/s1 --first-steps 30   # ... and each as if it had stopped at step 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpo_tui.engine.data.synthetic import operations  # noqa: E402
from grpo_tui.engine.eval.stats import wilson  # noqa: E402
from grpo_tui.rundir.event_reader import read_events  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402
from grpo_tui.rundir.phases import LABELS, PHASES, sum_phases  # noqa: E402
from grpo_tui.rundir.summary_stats import mean_and_stderr  # noqa: E402

# The cpu-demo's earlier settings (the --baseline), as `--set` overrides of today's preset: what --baseline runs.
# Before, a step was one prompt with G=8 completions (now two prompts of G=4), every row's prompt was encoded
# G times (share_prompt_prefix off), completions ran past the answer to the length cap (no stop_strings),
# decoding copied the KV cache at every token (no fast_cpu_decode), and auto threads (train.torch_threads = 0)
# were the cores minus the 1-minute load average, which still counts work that ended up to a minute ago; now
# they are the cores idle over 0.3 s.
# The baseline runs as many steps as the new demo, with the same held-out evals: without the stop string it
# trains on different completions, so it learns differently, not only more slowly.


def baseline_overrides() -> list[str]:
    """The previous settings, with the previous auto-threads rule applied now: what the demo would have chosen."""
    import torch

    cores = torch.get_num_threads()
    return [
        "train.num_generations=8",
        "train.share_prompt_prefix=false",
        "train.stop_strings=[]",
        "train.fast_cpu_decode=false",
        f"train.torch_threads={max(1, min(cores, int(cores - os.getloadavg()[0] + 0.5)))}",
    ]


MIN_STEPS_FOR_SIGNAL = 10  # fifths of fewer steps are two points each: no signal to speak of


def signal_z(rewards: list[float]) -> float | None:
    """(last fifth mean - first fifth mean) / combined standard error; None for too few steps."""
    k = len(rewards) // 5
    if k < 2:
        return None
    first, fe = mean_and_stderr(rewards[:k])
    last, le = mean_and_stderr(rewards[-k:])
    se = math.hypot(fe, le)
    return (last - first) / se if se > 0 else (math.inf if last > first else None)


@dataclass
class RunReport:
    name: str
    steps: int = 0
    wall_min: float | None = None
    first_step_s: float | None = None  # run_start (or launch) to the first step event
    startup: str = "-"  # where the seconds before the first step went
    signal_step: int | None = None
    signal_min: float | None = None
    z_end: float | None = None
    reward_first: tuple[float, float] | None = None
    reward_last: tuple[float, float] | None = None
    step_s: float | None = None
    phase_share: dict[str, float] = field(default_factory=dict)
    gen_tps: float | None = None
    acc_before: tuple[int, int] | None = None  # (correct, n) of the first eval event
    acc_after: tuple[int, int] | None = None
    acc_steps: tuple[int, int] | None = None
    by_operation: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # op -> (before, after, n) correct


def analyze(run_dir: Path, launched_t: float | None = None, first_steps: int | None = None) -> RunReport:
    """The report of one run; first_steps: as if the run had ended after that step (no later event counts, an
    eval at that step does). With a constant learning rate after warm-up, that is what a run of that many steps
    does, minus the held-out eval it would run at its end."""
    events = read_events(RunDir(run_dir).events)
    cut = [e for e in events if e.get("type") == "step"][first_steps - 1 : first_steps] if first_steps else []
    if cut:
        events = [
            e for e in events if e["t"] <= cut[0]["t"] or (e.get("type") == "eval" and e.get("step") == first_steps)
        ]
    r = RunReport(name=run_dir.name + (f" @{first_steps}" if first_steps else ""))
    starts = [e for e in events if e.get("type") == "run_start"]
    t0 = launched_t or (starts[0]["t"] if starts else None)
    steps = [e for e in events if e.get("type") == "step"]
    r.steps = len(steps)
    ends = [e for e in events if e.get("type") == "run_end"]
    rewards = [float((e.get("metrics") or {}).get("reward", math.nan)) for e in steps]
    evals = [e for e in events if e.get("type") == "eval"]

    def eval_s_before(t: float) -> float:  # the bench's own before/after evals are not the demo's time
        return sum(float(e.get("eval_s") or 0) for e in evals if e["t"] <= t)

    if t0 is not None and steps:
        r.first_step_s = steps[0]["t"] - t0 - eval_s_before(steps[0]["t"])
        r.startup = startup_text(events, launched_t, eval_s_before(steps[0]["t"]))
    if t0 is not None and (ends or steps):
        last_t = (ends[-1] if ends else steps[-1])["t"]
        r.wall_min = (last_t - t0 - eval_s_before(last_t)) / 60
    for n in range(MIN_STEPS_FOR_SIGNAL, len(rewards) + 1):
        z = signal_z(rewards[:n])
        if z is not None and z > 2:
            r.signal_step = n
            at = steps[n - 1]["t"]
            r.signal_min = (at - t0 - eval_s_before(at)) / 60 if t0 is not None else None
            break
    r.z_end = signal_z(rewards)
    k = len(rewards) // 5
    if k >= 1:
        r.reward_first, r.reward_last = mean_and_stderr(rewards[:k]), mean_and_stderr(rewards[-k:])
    timed = [e for e in steps if isinstance(e.get("phase_s"), dict)]
    if timed:
        total = sum_phases(timed)
        all_s = sum(total.values())
        r.step_s = all_s / len(timed)
        r.phase_share = {k: v / all_s for k, v in total.items()} if all_s > 0 else {}
        tps = [e["generation_tokens_per_s"] for e in timed if e.get("generation_tokens_per_s")]
        r.gen_tps = sum(tps) / len(tps) if tps else None
    evals = [e for e in events if e.get("type") == "eval" and e.get("n")]
    if evals:
        r.acc_before = (int(evals[0]["correct"]), int(evals[0]["n"]))
        if len(evals) > 1:  # the eval before training is no "after"
            r.acc_after = (int(evals[-1]["correct"]), int(evals[-1]["n"]))
            r.acc_steps = (int(evals[0].get("step", 0)), int(evals[-1].get("step", 0)))
            r.by_operation = by_operation(RunDir(run_dir).root, *r.acc_steps)
    return r


def by_operation(root: Path, before: int, after: int) -> dict[str, tuple[int, int, int]]:
    """Operation of a synthetic problem -> (correct before, correct after, problems), from the evals' item files:
    which kinds of problem the run learned, and which it unlearned (a policy that adds whatever the question)."""

    def items(step: int) -> dict[str, tuple[str, bool]]:
        path = RunDir(root).eval_results(step)
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
        return {
            str(r.get("id")): ("+".join(operations(str(r.get("question", "")))) or "other", bool(r.get("correct")))
            for r in rows
        }

    first, last = items(before), items(after)
    out: dict[str, list[int]] = {}
    for key, (op, ok) in first.items():
        if key in last:
            c = out.setdefault(op, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + ok, c[1] + last[key][1], c[2] + 1
    return {op: (a, b, n) for op, (a, b, n) in sorted(out.items(), key=lambda kv: -kv[1][2])}


def startup_text(events: list[dict[str, Any]], launched_t: float | None, eval_s: float = 0.0) -> str:
    """'imports 9 + model 2 + trainer 1 + step 1 21': seconds from launch (or run_start) to the first step.

    eval_s: seconds of the held-out eval before the first step, left out of "step 1"."""

    def t(pred: Any) -> float | None:
        return next((e["t"] for e in events if pred(e)), None)

    start = t(lambda e: e.get("type") == "run_start")
    model = t(lambda e: e.get("type") == "model")
    running = t(lambda e: e.get("type") == "state" and e.get("state") == "running")
    first = t(lambda e: e.get("type") == "step")
    loading = t(lambda e: e.get("type") == "state" and e.get("state") == "loading_model")
    if None in (start, model, running, first, loading):
        return "-"
    parts = [("imports", start - launched_t)] if launched_t else []
    parts += [
        ("data", loading - start),
        ("model", model - loading),
        ("trainer", running - model),
        ("step 1", first - running - eval_s),
    ]
    return " + ".join(f"{name} {secs:.0f}" for name, secs in parts)


def _acc(x: tuple[int, int] | None) -> str:
    if not x:
        return "-"
    lo, hi = wilson(*x)
    return f"{100 * x[0] / x[1]:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] of {x[1]}"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return fmt.format(x) if x is not None and math.isfinite(x) else "-"


def report_lines(reports: list[RunReport]) -> list[str]:
    rows: list[tuple[str, list[str]]] = [
        ("steps", [str(r.steps) for r in reports]),
        ("wall minutes (to run_end, evals excluded)", [_num(r.wall_min) for r in reports]),
        ("seconds to the first step", [_num(r.first_step_s, "{:.0f}") for r in reports]),
        ("  of which (s)", [r.startup for r in reports]),
        (
            "minutes to signal (z > 2)",
            [f"{_num(r.signal_min)} (step {r.signal_step})" if r.signal_step else "no signal" for r in reports],
        ),
        (
            "reward first fifth",
            [f"{r.reward_first[0]:.3f} ± {r.reward_first[1]:.3f}" if r.reward_first else "-" for r in reports],
        ),
        (
            "reward last fifth",
            [f"{r.reward_last[0]:.3f} ± {r.reward_last[1]:.3f}" if r.reward_last else "-" for r in reports],
        ),
        ("(last - first) / SE over the run", [_num(r.z_end) for r in reports]),
        ("seconds per step", [_num(r.step_s) for r in reports]),
        ("generation tokens/s", [_num(r.gen_tps, "{:.0f}") for r in reports]),
    ]
    for name in PHASES:
        if any(r.phase_share.get(name, 0) >= 0.005 for r in reports):
            rows.append((f"  {LABELS[name]} share", [f"{100 * r.phase_share.get(name, 0):.0f}%" for r in reports]))
    rows.append(("held-out greedy accuracy before", [_acc(r.acc_before) for r in reports]))
    rows.append(("held-out greedy accuracy after", [_acc(r.acc_after) for r in reports]))
    rows.append(
        (
            "  correct by operation, before -> after",
            [", ".join(f"{op} {a}->{b}/{n}" for op, (a, b, n) in r.by_operation.items()) or "-" for r in reports],
        )
    )
    width = max(len(n) for n, _ in rows)
    cols = [max(len(r.name), *(len(v[i]) for _, v in rows)) for i, r in enumerate(reports)]
    out = [" " * width + "  " + "  ".join(r.name.ljust(c) for r, c in zip(reports, cols))]
    out += [name.ljust(width) + "  " + "  ".join(v.ljust(c) for v, c in zip(vals, cols)) for name, vals in rows]
    return out


def run_demo(run_dir: Path, seed: int, max_steps: int, eval_limit: int, overrides: list[str]) -> float:
    """One headless cpu-demo run; returns the launch time (for minutes to signal from launch)."""
    cmd = [
        sys.executable,
        "-m",
        "grpo_tui.tui.cli",
        "--no-ui",
        "--preset",
        "cpu-demo",
        "--run-dir",
        str(run_dir),
        "--max-steps",
        str(max_steps),
        "--set",
        f"train.seed={seed}",
        "--set",
        f"eval.every_steps={max_steps}",
        "--set",
        f"eval.limit={eval_limit}",
    ]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    launched = time.time()
    print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"  exit {proc.returncode}: {proc.stderr[-2000:]}", file=sys.stderr)
    return launched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=Path, help="finished run directories to read (runs nothing)")
    p.add_argument("--baseline", action="store_true", help="also run the previous cpu-demo settings, interleaved")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--max-steps", type=int, default=None, help="steps per run (default: the preset's)")
    p.add_argument("--eval-limit", type=int, default=100, help="held-out synthetic problems for before/after accuracy")
    p.add_argument("--out", type=Path, default=Path("runs/demo-learning"), help="where the runs go")
    p.add_argument(
        "--first-steps",
        type=int,
        default=None,
        help="also report each run as if it had ended after this step (e.g. a shorter preset)",
    )
    a = p.parse_args(argv)
    a.out = a.out.resolve()  # the engine runs from the repository root: hand it the path this bench reads
    if a.runs:
        missing = [d for d in a.runs if not RunDir(d).events.exists()]
        if missing:
            print(f"error: no events.jsonl in {', '.join(map(str, missing))}: pass run directories", file=sys.stderr)
            return 2
        reports = [analyze(d) for d in a.runs]
        if a.first_steps:
            reports += [analyze(d, first_steps=a.first_steps) for d in a.runs]
    else:
        from grpo_tui.engine.config import load_config

        max_steps = a.max_steps or load_config("cpu-demo").train.max_steps
        print(f"load average at start: {os.getloadavg()}", flush=True)
        reports = []
        for seed in a.seeds:
            for label in ["new"] + (["baseline"] if a.baseline else []):
                run_dir = a.out / f"{label}-s{seed}"
                if run_dir.exists():
                    print(f"error: {run_dir} exists; pass another --out or remove it", file=sys.stderr)
                    return 2
                # the previous settings, threads chosen by the previous rule at their launch, as they were
                overrides = baseline_overrides() if label == "baseline" else []
                launched = run_demo(run_dir, seed, max_steps, a.eval_limit, overrides)
                reports.append(analyze(run_dir, launched))
                if a.first_steps:
                    reports.append(analyze(run_dir, launched, a.first_steps))
        print(f"load average at end: {os.getloadavg()}")
    print("\n".join(report_lines(reports)))
    print(
        "signal: the reward of the last fifth of the steps so far beats the first fifth by more than 2 standard "
        "errors; minutes count from launch (from run_start with --runs), less the held-out evals' seconds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
