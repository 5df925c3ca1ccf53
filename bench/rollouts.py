"""Rollout store benchmark: write a large run through the real writer, then time open, filters, search.

    .venv/bin/python bench/rollouts.py                      # 2,000 steps x 8 groups x 8 completions
    .venv/bin/python bench/rollouts.py --steps 200 --keep   # smaller; keep the run directory

Every figure is measured in a fresh subprocess (so memory figures are the
browser's own) and repeated; the best and the median are printed. The machine
is shared and noisy, so the ratios between alternatives (segments vs plain
JSONL, Arrow search vs a Python loop) are the figures to compare across runs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_tui.rundir.layout import RunDir  # noqa: E402

WORDS = (
    "the of and to a in is we so then total each number more than less times equals first second she he "
    "has have had apples pencils books dollars cost price left remaining sum difference multiply divide add "
    "subtract step answer therefore because since let us compute which gives per week day hour minutes "
    "Janet ducks eggs sells market bakes muffins friends every morning twice half third quarter"
).split()
NAMES = "Sven Maria Lee Aisha Tom Priya Omar Chen Sofia Ravi".split()
ITEMS = "pencils apples books marbles stickers cookies".split()


def make_run(run_dir: Path, steps: int, groups: int, gens: int, words: int, seed: int = 0) -> dict:
    """Writes rollouts through rundir.rollouts.RolloutWriter exactly as the engine does (flush per batch)."""
    from grpo_tui.rundir.rollouts import CompletionRecord, RolloutWriter

    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).config.write_text(json.dumps({"preset": {"name": "bench"}, "model": {"name": "synthetic"}}))
    w = RolloutWriter(RunDir(run_dir).rollouts)
    t0 = time.perf_counter()
    write_s = 0.0
    for step in range(1, steps + 1):
        batch = []
        for g in range(groups):
            name, item = rng.choice(NAMES), rng.choice(ITEMS)
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            prompt = f"{name} has {a} {item}. Then they get {b} more {item}. How many {item} does {name} have now?"
            gold = str(a + b)
            comps = []
            p_ok = min(0.9, 0.1 + 0.8 * step / steps)  # accuracy climbs as "training" goes on
            same = rng.random() < 0.15  # some groups where every completion scores the same
            for _ in range(gens):
                n = rng.randint(words // 2, words * 3 // 2)
                ok = rng.random() < p_ok
                ans = gold if ok else str(rng.randint(1, 198))
                truncated = rng.random() < 0.05
                body = " ".join(rng.choices(WORDS, k=n))
                text = f"<reasoning>\n{body}\n</reasoning>\n" + ("" if truncated else f"<answer>\n{ans}\n</answer>")
                corr = 2.0 if ok and not truncated and not same else 0.0
                fmt = 0.5 if not truncated else 0.0
                comps.append(
                    CompletionRecord(
                        text=text,
                        extracted=None if truncated else ans,
                        correct=ok and not truncated,
                        rewards={"correctness": corr, "int_answer": 0.5, "soft_format": fmt, "xmlcount": 0.375},
                        total=corr + 0.875 + fmt if not same else 1.0,
                        advantage=0.0,
                        tokens=int(n * 1.3),
                        truncated=truncated,
                    )
                )
            mean = sum(c.total for c in comps) / len(comps)
            for c in comps:
                c.advantage = c.total - mean
            batch.append((step, g, prompt, gold, comps))
        t = time.perf_counter()
        for rec in batch:
            w.write_group(*rec)
        w.flush()
        write_s += time.perf_counter() - t
    t = time.perf_counter()
    w.close()
    write_s += time.perf_counter() - t
    jsonl = RunDir(run_dir).rollouts.stat().st_size
    seg = sum(p.stat().st_size for p in RunDir(run_dir).rollout_segments.glob("seg-*.arrow"))
    return {
        "generate_and_write_s": time.perf_counter() - t0,
        "writer_s": write_s,
        "writer_ms_per_step": 1000 * write_s / steps,
        "jsonl_mb": jsonl / 2**20,
        "segments_mb": seg / 2**20,
        "segments": w.segments_written,
    }


# ---------------------------------------------------------------- measured in a subprocess

FILTERS = {
    "correct": dict(correct=True),
    "incorrect+truncated": dict(correct=False, truncated=True),
    "zero-std groups": dict(zero_std=True),
    "reward 1..2.5": dict(reward_min=1.0, reward_max=2.5),
    "steps 500..900": dict(step_min=500, step_max=900),
    "all combined": dict(correct=False, zero_std=False, reward_min=0.5, step_min=100, step_max=1800, text="apples"),
}
SEARCHES = ["Janet ducks", "zzz-not-there", "PENCILS", "answer>\n42\n<", "/eggs [0-9]+ times/"]


def measure(run_dir: str, mode: str, repeat: int) -> dict:
    from grpo_tui.rundir.rollouts import RolloutFilter, RolloutReader, Rollouts, open_rollouts

    out: dict = {}
    t = time.perf_counter()
    import pyarrow  # noqa: F401 - counted apart: every reader pays it once

    out["import_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if mode == "jsonl":  # what a reader without segments pays: parse every line
        reader = RolloutReader(run_dir)
        reader._opened = True  # skip the segments
        r = Rollouts(reader.read_new(), reader.report)
    else:
        r = open_rollouts(run_dir)
    r.summary()
    out["open_s"] = time.perf_counter() - t
    out["groups"], out["completions"] = r.num_groups, r.num_completions
    out["problems"] = r.report.messages()
    if mode == "jsonl":
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out

    def timed(fn):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            res = fn()
            times.append(time.perf_counter() - t)
        return min(times), statistics.median(times), res

    for name, kw in FILTERS.items():
        best, med, sel = timed(lambda: r.summary(r.select(RolloutFilter(**kw))))
        out[f"filter {name}"] = (best, med, int(sel.matches.sum()))
    for q in SEARCHES:
        best, med, sel = timed(lambda: r.select(RolloutFilter(text=q)))
        out[f"search {q!r}"] = (best, med, sel.count)
    best, med, _ = timed(lambda: r.history(int(r.step_groups(int(r.steps[-1]))[0])))
    out["prompt history"] = (best, med, len(_))
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the Python copy below
    out["store_mb"] = r.nbytes() / 2**20
    # the alternative: a Python loop over the texts (what a dict-per-group store would do)
    texts = r.text.to_pylist()
    best, med, n = timed(lambda: sum(1 for s in texts if "janet ducks" in s.lower()))
    out["python loop search 'Janet ducks'"] = (best, med, n)
    return out


def measure_app(run_dir: str, repeat: int) -> dict:
    """What the user sees: the browser (headless, Pilot) from start to the step list filled, and from
    a filter change to the step list redrawn."""
    import asyncio

    from grpo_tui.tui.browser.app import BrowserApp
    from grpo_tui.tui.browser.screens.rollouts import RolloutScreen

    out: dict = {}

    async def main() -> None:
        t0 = time.perf_counter()
        app = BrowserApp(Path(run_dir), poll_s=60)
        async with app.run_test(size=(160, 48)) as pilot:
            while not (isinstance(app.screen, RolloutScreen) and app.screen.selection is not None):
                await pilot.pause(0.005)
            await pilot.pause()
            out["app open to steps shown_s"] = time.perf_counter() - t0
            s = app.screen
            for name, value in (
                ("app search 'Janet ducks'", "Janet ducks"),
                ("app search 'zzz-not-there'", "zzz-not-there"),
            ):
                times = []
                for _ in range(repeat):
                    for v in ("", value):
                        s.query_one("#f-search").value = v
                        t = time.perf_counter()
                        s.apply_filter()
                        while s.selection is None or s.selection.filter.text != v:
                            await pilot.pause(0.002)
                        await pilot.pause()
                    times.append(time.perf_counter() - t)
                out[name] = (min(times), statistics.median(times), s.selection.count)
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    asyncio.run(main())
    return out


def run_child(run_dir: Path, mode: str, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--run-dir", str(run_dir), "--repeat", str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--words", type=int, default=150, help="mean words per completion (~1.3 tokens each)")
    ap.add_argument("--run-dir", type=Path, help="use (or create) this run directory")
    ap.add_argument("--keep", action="store_true", help="keep the generated run directory")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--opens", type=int, default=3, help="fresh-process opens per mode")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "app":
        print(json.dumps(measure_app(str(args.run_dir), args.repeat)))
        return 0
    if args.child:
        print(json.dumps(measure(str(args.run_dir), args.child, args.repeat)))
        return 0

    tmp = None
    run_dir = args.run_dir
    if run_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="rollouts-bench-"))
        run_dir = tmp / "run"
    try:
        if not RunDir(run_dir).rollouts.exists():
            print(
                f"writing {args.steps} steps x {args.groups} groups x {args.generations} completions "
                f"to {run_dir} through RolloutWriter ...",
                flush=True,
            )
            info = make_run(run_dir, args.steps, args.groups, args.generations, args.words)
            print(
                f"  written in {info['generate_and_write_s']:.1f} s (writer itself {info['writer_s']:.2f} s, "
                f"{info['writer_ms_per_step']:.2f} ms/step incl. sealing {info['segments']} segments)"
            )
            print(
                f"  rollouts.jsonl {info['jsonl_mb']:.1f} MB, segments {info['segments_mb']:.1f} MB "
                f"({info['segments_mb'] / info['jsonl_mb']:.0%} of the JSONL)"
            )
        seg = [run_child(run_dir, "segments", args.repeat) for _ in range(args.opens)]
        plain = [run_child(run_dir, "jsonl", 1) for _ in range(min(args.opens, 2))]
        s_open = [m["open_s"] for m in seg]
        p_open = [m["open_s"] for m in plain]
        first = seg[0]
        print(f"\n{first['completions']:,} completions in {first['groups']:,} groups")
        for p in first["problems"]:
            print(f"  note: {p}")
        print(
            f"open (segments + JSONL tail, step summary): best {min(s_open):.3f} s, "
            f"median {statistics.median(s_open):.3f} s over {len(s_open)} fresh processes "
            f"(+ {min(m['import_s'] for m in seg):.2f} s to import pyarrow)"
        )
        print(
            f"open (plain JSONL, as an old run):          best {min(p_open):.3f} s "
            f"-> segments are {min(p_open) / min(s_open):.1f}x faster"
        )
        print(
            f"memory: peak RSS {max(m['rss_mb'] for m in seg):.0f} MB after open + all queries "
            f"(columns {first['store_mb']:.0f} MB); plain-JSONL open peak {max(m['rss_mb'] for m in plain):.0f} MB"
        )
        print(f"\nquery (best / median of {args.repeat} x {len(seg)} processes)        seconds          matches")
        loop = None
        arrow = None
        for key in first:
            if not isinstance(first[key], list) or key == "problems":
                continue
            bests = [m[key][0] for m in seg]
            meds = [m[key][1] for m in seg]
            print(f"  {key:<40} {min(bests):7.3f} / {statistics.median(meds):6.3f}   {first[key][2]:>9,}")
            if key.startswith("python loop"):
                loop = min(bests)
            if key == "search 'Janet ducks'":
                arrow = min(bests)
        if loop and arrow:
            print(f"Arrow search vs a Python loop over the texts: {loop / arrow:.1f}x faster")
        worst = max(
            max(m[k][0] for m in seg)
            for k in first
            if isinstance(first[k], list) and k != "problems" and not k.startswith("python")
        )
        apps = [run_child(run_dir, "app", args.repeat) for _ in range(args.opens)]
        a_open = [m["app open to steps shown_s"] for m in apps]
        print(f"\nthe browser app (headless Textual, Pilot), {len(apps)} fresh processes:")
        print(f"  start to step list shown          best {min(a_open):.3f} s, median {statistics.median(a_open):.3f} s")
        for key in (k for k in apps[0] if k.startswith("app search")):
            print(
                f"  {key + ' to redrawn':<33} best {min(m[key][0] for m in apps):.3f} s, median "
                f"{statistics.median([m[key][1] for m in apps]):.3f} s  ({apps[0][key][2]:,} matches)"
            )
        print(f"  peak RSS {max(m['rss_mb'] for m in apps):.0f} MB")
        try:
            import os

            print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        except OSError:
            pass
        worst = max(worst, max(m[k][0] for m in apps for k in m if k.startswith("app search")))
        print(
            f"\ntargets: open < 1 s: {'met' if min(s_open) < 1 else 'MISSED'} (store), "
            f"{'met' if min(a_open) < 1 else 'MISSED'} (app, best); "
            f"every filter/search < 1 s: {'met' if worst < 1 else 'MISSED'} (worst best-of {worst:.3f} s); "
            f"memory < 1 GB: {'met' if max(m['rss_mb'] for m in seg + apps) < 1024 else 'MISSED'}"
        )
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
