"""How much CPU does the dashboard use while it watches a run?

Writes a synthetic run directory with the engine's own writers
(rundir.events.EventWriter, rundir.rollouts.RolloutWriter) at one step per
second with G=8 completions and 8 groups per step, while the real app
(`Dashboard`, attached to that directory) runs in a child process on a pseudo
terminal, drawing exactly as it would in a terminal. Prints the app process's
CPU time as % of one core, per phase, side by side:

  idle       the engine is alive but writes nothing
  streaming  one step (8 groups x 8 completions, step + memory events) per second
  history    attaching to the finished run (reading all of it) is measured separately

and the key-press latency (press -> handled and repainted) measured with
App.run_test in a second child while the run streams. The writer's own CPU is
not counted (only the app's process is measured, with psutil).

    .venv/bin/python bench/tui_cpu.py [--idle 10] [--stream 30] [--size 140x45]

The functions that write synthetic runs are also used by tests/test_tui*.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grpo_tui.rundir import events as events_module  # noqa: E402
from grpo_tui.rundir.control import ensure_control_dir  # noqa: E402
from grpo_tui.rundir.events import EventWriter  # noqa: E402
from grpo_tui.rundir.health import HealthMonitor, Thresholds  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402
from grpo_tui.rundir.rollouts import CompletionRecord, RolloutWriter  # noqa: E402

REWARDS = ["correctness", "int_answer", "strict_format", "soft_format", "xmlcount"]
NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana"]
THINGS = ["apples", "marbles", "stickers", "cards", "pencils", "cookies"]


# --------------------------------------------------------------- synthetic runs


@contextlib.contextmanager
def fixed_clock(start: float = 1_700_000_000.0, tick: float = 0.5) -> Iterator[None]:
    """Make EventWriter stamp events with a deterministic clock (for snapshot tests)."""
    real = events_module.time
    state = {"t": start}

    class _Clock:
        @staticmethod
        def time() -> float:
            state["t"] += tick
            return state["t"]

    events_module.time = _Clock  # type: ignore[assignment]
    try:
        yield
    finally:
        events_module.time = real


class SyntheticRun:
    """A run directory written through the engine's writers, one step at a time."""

    def __init__(
        self,
        root: Path,
        *,
        G: int = 8,
        groups: int = 8,
        max_steps: int = 60,
        seed: int = 0,
        preset: str = "synthetic",
        device: str = "cpu",
        health: bool = False,
    ) -> None:
        self.run = RunDir(Path(root))
        self.run.root.mkdir(parents=True, exist_ok=True)
        ensure_control_dir(self.run.control)
        self.G, self.groups, self.max_steps, self.device = G, groups, max_steps, device
        self.rng = random.Random(seed)
        self.events = EventWriter(self.run.events)
        self.rollouts = RolloutWriter(self.run.rollouts)
        self.preset = preset
        self.step = 0
        self.tokens = 0
        # health: run the engine's health rules over the steps and write `health` events, as the engine does;
        # the truncation threshold is lowered below the synthetic 15% so a warning is on screen while measuring
        self.health = HealthMonitor(Thresholds(truncation_frac=0.1), max_completion_length=96) if health else None

    def start(self, pid: int | None = None) -> None:
        e = self.events
        e.emit(
            "run_start",
            run_dir=str(self.run.root),
            preset=self.preset,
            preset_path=f"{self.preset}.toml",
            model="synthetic-model",
            pid=pid or 0,
            host="bench",
            resumed=False,
            resume_from=None,
            max_steps=self.max_steps,
            num_generations=self.G,
            reward_names=REWARDS,
            reward_weights={r: 1.0 for r in REWARDS},
            device=self.device,
            versions={},
            config={
                "train": {
                    "learning_rate": 2e-4,
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "beta": 0.0,
                    "max_completion_length": 96,
                },
                "rewards": {r: 1.0 for r in REWARDS},
            },
        )
        e.state("starting")
        e.emit(
            "dataset",
            source="synthetic",
            origin="built-in, difficulty 1",
            rows_total=2000,
            rows_used=2000,
            rows_skipped=0,
            skipped={},
        )
        e.state("loading_model")
        e.emit(
            "model",
            name="synthetic-model",
            path="/nowhere",
            parameters=134_515_008,
            trainable=4_884_480,
            dtype="float32",
            load_s=1.0,
        )
        e.state("running", step=0)
        e.emit("memory", step=0, **self._memory())

    def _memory(self) -> dict[str, Any]:
        if self.device.startswith("cuda"):
            alloc = 20 + 4 * math.sin(self.step / 5) + self.rng.random()
            return {
                "device": self.device,
                "rss_gb": 3.1,
                "allocated_gb": round(alloc, 3),
                "reserved_gb": round(alloc + 6, 3),
                "peak_gb": round(alloc + 9, 3),
                "peak_reserved_gb": round(alloc + 9.5, 3),
                "total_gb": 79.6,
                "nvml_used_gb": round(alloc + 7, 3),
            }
        return {
            "device": "cpu",
            "rss_gb": round(1.2 + 0.01 * self.step + 0.05 * self.rng.random(), 3),
            "allocated_gb": None,
            "reserved_gb": None,
            "peak_gb": None,
            "nvml_used_gb": None,
            "total_gb": 23.5,
        }

    def _completion(self, gold: int, skill: float) -> CompletionRecord:
        rng = self.rng
        formatted = rng.random() < skill
        guess = gold if rng.random() < skill else gold + rng.choice([-3, -1, 1, 2, 10])
        reasoning = " ".join(
            rng.choice(["First", "Then", "So", "We add", "They have", "In total"]) + f" {rng.randint(1, 20)}"
            for _ in range(rng.randint(2, 6))
        )
        truncated = rng.random() < 0.15
        if formatted and not truncated:
            text = f"<reasoning>\n{reasoning}.\n</reasoning>\n<answer>\n{guess}\n</answer>"
            extracted = str(guess)
        elif truncated:
            text = f"<reasoning>\n{reasoning} and then we keep going and going"
            extracted = None
        else:
            text = f"{reasoning}. The answer is {guess}."
            extracted = str(guess)
        correct = extracted == str(gold)
        rewards = {
            "correctness": 2.0 if correct else 0.0,
            "int_answer": 0.5 if extracted is not None else 0.0,
            "strict_format": 0.5 if formatted and not truncated else 0.0,
            "soft_format": 0.5 if formatted and not truncated else 0.0,
            "xmlcount": round(0.125 * text.count("<") / 2, 3),
        }
        return CompletionRecord(
            text=text,
            extracted=extracted,
            correct=correct,
            rewards=rewards,
            total=sum(rewards.values()),
            advantage=0.0,
            tokens=96 if truncated else rng.randint(20, 90),
            truncated=truncated,
        )

    def write_step(self) -> None:
        """One optimizer step: its rollouts (G x groups), then the step and memory events."""
        self.step += 1
        step, rng = self.step, self.rng
        skill = min(0.9, 0.1 + step / max(1, self.max_steps))
        totals, zero_std, lengths, clipped, correct = [], 0, [], 0, 0
        per_reward = {r: [] for r in REWARDS}
        for g in range(self.groups):
            a, b = rng.randint(2, 30), rng.randint(1, 20)
            name, thing = rng.choice(NAMES), rng.choice(THINGS)
            prompt = f"{name} has {a} {thing}. Then they get {b} more {thing}. How many {thing} does {name} have now?"
            comps = [self._completion(a + b, skill) for _ in range(self.G)]
            ts = [c.total for c in comps]
            mean = sum(ts) / len(ts)
            std = (sum((t - mean) ** 2 for t in ts) / len(ts)) ** 0.5
            for c in comps:
                c.advantage = (c.total - mean) / (std + 1e-4)
                lengths.append(c.tokens)
                clipped += c.truncated
                correct += c.correct
                for r in REWARDS:
                    per_reward[r].append(c.rewards[r])
            zero_std += std < 1e-9
            totals.extend(ts)
            self.rollouts.write_group(step, g, prompt, str(a + b), comps)
        self.rollouts.flush()
        n = len(totals)
        self.tokens += sum(lengths) + 60 * n
        metrics = {
            "loss": round(rng.uniform(-0.05, 0.05), 4),
            "grad_norm": round(rng.uniform(0.1, 2), 4),
            "learning_rate": 2e-4,
            "num_tokens": float(self.tokens),
            "completions/mean_length": sum(lengths) / n,
            "completions/min_length": float(min(lengths)),
            "completions/max_length": float(max(lengths)),
            "completions/clipped_ratio": clipped / n,
            "reward": sum(totals) / n,
            "reward_std": 0.5,
            "frac_reward_zero_std": zero_std / self.groups,
            "entropy": 1.2,
            # policy metrics of a beta > 0 run (deterministic: the rng sequence, and so the snapshot
            # tests' data, stays as it was)
            "kl": 0.01 + 0.001 * step,
            "clip_ratio/region_mean": 0.002 * (step % 7),
            "clip_ratio/low_mean": 0.001 * (step % 5),
            "clip_ratio/high_mean": 0.001 * (step % 3),
        }
        for r, vals in per_reward.items():
            metrics[f"rewards/{r}/mean"] = sum(vals) / n
            metrics[f"rewards/{r}/std"] = 0.1
        ev = self.events.emit(
            "step",
            step=step,
            max_steps=self.max_steps,
            epoch=step / 250,
            metrics=metrics,
            step_time_s=1.0,
            tokens_per_s=float(sum(lengths) + 60 * n),
            elapsed_s=float(step),
            eta_s=float(self.max_steps - step),
            correct_frac=correct / n,
        )
        for h in self.health.add(ev) if self.health is not None else ():
            self.events.emit("health", **h)
        self.events.emit("memory", step=step, **self._memory())

    def finish(self, status: str = "finished") -> None:
        self.events.emit(
            "checkpoint", step=self.step, path=str(self.run.checkpoints / f"checkpoint-{self.step}"), reason="final"
        )
        self.events.state("finished", step=self.step, detail=status)
        self.events.emit("run_end", status=status, step=self.step, exit_code=0, elapsed_s=float(self.step))

    def close(self) -> None:
        self.events.close()
        self.rollouts.close()


def write_synthetic_run(
    root: Path, steps: int, *, finished: bool = True, deterministic: bool = True, **kw: Any
) -> SyntheticRun:
    """A complete synthetic run in one go (fixed timestamps when deterministic)."""
    ctx = fixed_clock() if deterministic else contextlib.nullcontext()
    with ctx:
        run = SyntheticRun(root, **kw)
        run.start()
        for _ in range(steps):
            run.write_step()
        if finished:
            run.finish()
        run.close()
    return run


# ------------------------------------------------------------------ the bench

CHILD_PTY = r"""
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
import grpo_tui.tui.app as tui_app
from grpo_tui.tui.app import Dashboard

class BenchDashboard(Dashboard):
    CSS_PATH = str(Path(tui_app.__file__).parent / Dashboard.CSS_PATH)  # a class made in -c has no file of its own

    def on_mount(self) -> None:
        super().on_mount()
        if {group}:  # show another curve group (as pressing g would)
            self.action_next_curves({group})

BenchDashboard(Path({run!r})).run()
"""

CHILD_LATENCY = r"""
import asyncio, json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from textual import events
from textual.app import App
from textual.screen import Screen
from grpo_tui.tui.app import Dashboard

# Latency = key sent -> its action has run -> the next frame (compositor refresh) has been drawn.
frames, handled = [], []
_refresh = Screen._compositor_refresh
def _timed_refresh(self):
    _refresh(self)
    frames.append(time.perf_counter())
Screen._compositor_refresh = _timed_refresh
_dispatch = App._dispatch_action
async def _timed_dispatch(self, *a, **k):
    r = await _dispatch(self, *a, **k)
    handled.append(time.perf_counter())
    return r
App._dispatch_action = _timed_dispatch

async def main():
    app = Dashboard(Path({run!r}))
    lat = []
    async with app.run_test(size=({w}, {h})) as pilot:
        await pilot.pause(1.0)
        deadline = time.monotonic() + {seconds}
        keys = [("m", "m"), ("comma", ","), ("full_stop", "."), ("left_square_bracket", "["), ("f", "f")]
        i = 0
        while time.monotonic() < deadline:
            key, char = keys[i % len(keys)]
            i += 1
            handled.clear()
            t0 = time.perf_counter()
            app._driver.send_message(events.Key(key, char))
            while True:
                await asyncio.sleep(0.002)
                if handled and any(f > handled[0] for f in frames[-5:]):
                    done = next(f for f in frames[-5:] if f > handled[0])
                    lat.append((done - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 2:
                    lat.append(2000.0)
                    break
            await asyncio.sleep(0.37)
    print(json.dumps({{"n": len(lat), "median_ms": statistics.median(lat), "max_ms": max(lat),
                      "p90_ms": sorted(lat)[int(0.9 * (len(lat) - 1))]}}))

asyncio.run(main())
"""


def _spawn_on_pty(code: str, cols: int, rows: int) -> tuple[subprocess.Popen, int]:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)

    def drain() -> None:  # a terminal that reads everything the app writes
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    return proc, master


def _cpu(proc: Any) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def measure(seconds: float, proc: Any, work: Any = None) -> float:
    """CPU % of one core used by proc over `seconds`, while `work()` runs once a second."""
    c0, t0 = _cpu(proc), time.monotonic()
    next_tick = t0
    while time.monotonic() - t0 < seconds:
        if work is not None and time.monotonic() >= next_tick:
            work()
            next_tick += 1.0
        time.sleep(max(0.0, min(0.05, next_tick - time.monotonic())) if work else 0.1)
    return 100 * (_cpu(proc) - c0) / (time.monotonic() - t0)


def main() -> int:
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=10, help="seconds of an alive but silent engine")
    ap.add_argument("--stream", type=float, default=30, help="seconds of streaming at 1 step/s")
    ap.add_argument("--history", type=int, default=300, help="steps already in the run before the app attaches")
    ap.add_argument("--size", default="140x45", help="terminal size COLSxROWS")
    ap.add_argument("--latency", type=float, default=10, help="seconds of key-latency probing (0: skip)")
    ap.add_argument(
        "--group",
        type=int,
        default=0,
        help="curve group shown while measuring (0 rewards, 1 policy, 2 optimizer, 3 lengths)",
    )
    ap.add_argument("--no-health", action="store_true", help="don't write health events (the engine's checks)")
    args = ap.parse_args()
    cols, rows = (int(x) for x in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="grpo-tui-bench-") as tmp:
        root = Path(tmp) / "run"
        run = SyntheticRun(root, max_steps=args.history + 10_000, health=not args.no_health)
        run.start(pid=os.getpid())
        for _ in range(args.history):
            run.write_step()
        run.run.pid_file.write_text(str(os.getpid()))  # the "engine" (this writer) is alive
        print(
            f"run: {root} ({args.history} steps of history, G={run.G}, {run.groups} groups/step), "
            f"terminal {cols}x{rows}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
            f"curve group {args.group}, health events {'off' if args.no_health else 'on'}"
        )

        proc, master = _spawn_on_pty(CHILD_PTY.format(root=str(ROOT), run=str(root), group=args.group), cols, rows)
        app = psutil.Process(proc.pid)
        startup_c0 = _cpu(app)
        time.sleep(4.0)  # start, read the history, first paint
        if proc.poll() is not None:
            raise SystemExit(f"the dashboard exited with code {proc.returncode} before measuring")
        startup = _cpu(app) - startup_c0
        idle = measure(args.idle, app)
        stream = measure(args.stream, app, run.write_step)
        idle2 = measure(args.idle, app)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(master)

        latency = None
        if args.latency > 0:
            code = CHILD_LATENCY.format(root=str(ROOT), run=str(root), w=cols, h=rows, seconds=args.latency)
            child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + args.latency + 15
            while child.poll() is None and time.monotonic() < deadline:
                run.write_step()
                time.sleep(1.0)
            out = child.communicate(timeout=30)[0]
            latency = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        run.close()

    print(f"startup (attach, read {args.history} steps, first paint): {startup:.2f} s CPU")
    print(f"{'phase':<28}{'app CPU, % of one core':>24}")
    print(f"{'idle (engine silent)':<28}{idle:>24.1f}")
    print(f"{'streaming 1 step/s, G=8x8':<28}{stream:>24.1f}")
    print(f"{'idle again':<28}{idle2:>24.1f}")
    if latency:
        print(
            f"key press -> handled+repainted while streaming: median {latency['median_ms']:.0f} ms, "
            f"p90 {latency['p90_ms']:.0f} ms, max {latency['max_ms']:.0f} ms over {latency['n']} presses"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
