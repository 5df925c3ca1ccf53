"""`grpo-tui stop|pause|resume|checkpoint|set RUN_DIR`: steer a running engine from a shell.

The same commands the dashboard's keys send, through the run's control/ directory. Each waits for the engine's
acknowledgement (its watcher answers within a fraction of a second) and prints it: accepted (it acts at the next
step boundary), or refused with the reason (exit 2). `set` checks its values against the run's live knobs before
sending anything, with the same function the engine uses (rundir/knobs.py). `--wait` also waits until the
command is carried out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from grpo_tui.rundir.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from grpo_tui.rundir.events import Command
from grpo_tui.tui.console.arg_types import positive_float
from grpo_tui.tui.text import say

# the commands a shell sends (switch_preset is the dashboard's), with what each does and what its acceptance means
WHAT = {
    Command.STOP: "ask a run's engine to stop (it finishes the step and writes a checkpoint)",
    Command.PAUSE: "pause a run at the end of its step (the model stays in memory; resume continues at once)",
    Command.RESUME: "resume a paused run",
    Command.CHECKPOINT: "write a checkpoint at the end of the step",
    Command.SET: "change live knobs at the next step boundary: learning_rate, temperature, top_p, beta, "
    "reward_weights.NAME",
}
ACCEPTED = {
    Command.STOP: "it finishes the step and writes a checkpoint",
    Command.PAUSE: "it pauses at the end of the step",
    Command.RESUME: "it continues",
    Command.CHECKPOINT: "it writes one at the end of the step",
    Command.SET: "the values apply at the next step boundary",
}
SHELL_COMMANDS: tuple[str, ...] = tuple(str(c) for c in WHAT)


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """['learning_rate=1e-5', 'reward_weights.correctness=2'] -> a `set` command's args (values stay text: the
    knob check turns them into numbers and names a bad one)."""
    from grpo_tui.rundir.knobs import REWARD_WEIGHTS, KnobError

    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise KnobError(f"{pair!r}: expected KEY=VALUE, e.g. learning_rate=1e-5 or {REWARD_WEIGHTS}.correctness=2")
        if key.startswith(REWARD_WEIGHTS + "."):
            args.setdefault(REWARD_WEIGHTS, {})[key[len(REWARD_WEIGHTS) + 1 :]] = value
        else:
            args[key] = value
    return args


def _wait_for(events_path: Path, offset: int, cid: str, statuses: set[str], timeout: float) -> dict | None:
    """The first `command` event for cid whose status is in statuses, read from offset on; None at the timeout."""
    from grpo_tui.rundir.event_reader import EventTail

    tail = EventTail(events_path, offset)
    deadline = time.monotonic() + timeout
    while True:
        for ev in tail:  # every new event to the current end of the log, a chunk at a time
            if ev.get("type") == "command" and ev.get("id") == cid and ev.get("status") in statuses:
                return ev
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def main(command: str, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"grpo-tui {command}", description=WHAT[command])
    p.add_argument("run_dir", type=Path)
    if command == "set":
        p.add_argument(
            "values",
            nargs="+",
            metavar="KEY=VALUE",
            help="learning_rate, temperature, top_p, beta, or reward_weights.NAME (a reward of the run)",
        )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the engine has carried the command out "
        "(the end of the current step), not only until it accepted it",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the engine's answer (with --wait: for it to act); default 10",
    )
    args = p.parse_args(argv)
    import os

    from grpo_tui.rundir.control import open_control_dir, send_command
    from grpo_tui.rundir.errors import GrpoTuiError
    from grpo_tui.rundir.knobs import KnobError, validate_knobs
    from grpo_tui.rundir.layout import RunDir
    from grpo_tui.rundir.state import fold_run

    run = RunDir(args.run_dir)
    try:  # the engine's own checks, before anything else is read or written
        os.close(open_control_dir(run.control))
    except GrpoTuiError as e:
        say(f"error: grpo-tui {command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # no run directory, or no control/ in it
        say(f"error: no engine is running in {args.run_dir} ({e.strerror or e})", file=sys.stderr)
        return EXIT_USAGE
    pid = run.engine_pid() if run.exists() else None
    if pid is None:
        say(f"error: no engine is running in {args.run_dir}", file=sys.stderr)
        return EXIT_USAGE
    body: dict[str, Any] = {}
    if command == "set":
        names = fold_run(run.root, reward_trend=False).reward_names  # the head and tail hold them
        try:
            body = validate_knobs(parse_assignments(args.values), names)
        except KnobError as e:
            say(f"error: grpo-tui set: {e}", file=sys.stderr)
            return EXIT_USAGE
    offset = run.events.stat().st_size if run.events.exists() else 0
    try:
        cid = send_command(run.control, command, **body)
    except GrpoTuiError as e:  # changed since the check above
        say(f"error: grpo-tui {command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # no control/ directory
        say(f"error: can't send {command} to {run.control}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    ack = _wait_for(run.events, offset, cid, {"accepted", "rejected", "done"}, args.timeout)
    if ack is None:
        say(
            f"no answer from engine pid {pid} within {args.timeout:g} s; the command stays queued in "
            f"{run.control} (watch with: grpo-tui attach {args.run_dir})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if ack["status"] == "rejected":
        say(f"refused: {ack.get('detail') or 'no reason given'}", file=sys.stderr)
        return EXIT_USAGE
    say(f"{command} accepted by engine pid {pid}: {ACCEPTED[command]}")
    if args.wait and ack["status"] != "done":
        ack = _wait_for(run.events, offset, cid, {"rejected", "done"}, args.timeout)
        if ack is None:
            say(f"not carried out within {args.timeout:g} s (a step can take longer; raise --timeout)", file=sys.stderr)
            return EXIT_FAILED
        if ack["status"] == "rejected":
            say(f"refused: {ack.get('detail') or 'no reason given'}", file=sys.stderr)
            return EXIT_USAGE
        say(f"done{': ' + ack['detail'] if ack.get('detail') else ''}")
    say(f"watch it with: grpo-tui attach {args.run_dir}")
    return EXIT_OK
