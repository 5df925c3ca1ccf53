"""How much CPU does the dashboard use while it watches a run?

Writes a synthetic run directory with the engine's own writers
(rundir.event_writer.EventWriter, rundir.rollouts.RolloutWriter) at one step per
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

The synthetic run is written by tests/support/synthetic.py, the helper the dashboard tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# the synthetic run writer is a test helper (tests/support); the bench borrows it, the tests never load the bench
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from support.synthetic import SyntheticRun  # noqa: E402

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
