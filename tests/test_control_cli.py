"""`grpo-tui stop|pause|resume|checkpoint|set RUN_DIR` against a real engine: each waits for the engine's answer and
prints it; a bad `set` is refused before anything is sent."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.polling import wait_for_event
from support.processes import run_grpo_tui

from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.layout import RunDir
from grpo_tui.tui.console.control import parse_assignments
from grpo_tui.tui.launcher import launch_engine


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_grpo_tui([*args], timeout=180)


def test_parse_assignments_builds_the_set_args() -> None:
    assert parse_assignments(["learning_rate=1e-5", "reward_weights.correctness = 2", "reward_weights.xml=0"]) == {
        "learning_rate": "1e-5",
        "reward_weights": {"correctness": "2", "xml": "0"},
    }


def test_control_commands_from_the_shell(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    d = str(run_dir)
    engine = launch_engine("tiny", run_dir, max_steps=100000, overrides=["train.max_completion_length=8"])
    run = RunDir(run_dir)
    try:
        assert engine.wait_started(), engine.preflight_output()
        wait_for_event(run.events, lambda e: e["type"] == "step")
        # refused before anything is sent: the run's own knob check, exit 2
        for args, why in [
            (["top_p=1.5"], "[train] top_p must be a number > 0 and <= 1"),
            (["reward_weights.nope=1"], "no reward named 'nope'"),
            (["temperature"], "expected KEY=VALUE"),
            (["lr=1"], "'lr' is not a live knob"),
        ]:
            r = _cli("set", d, *args)
            assert r.returncode == 2 and why in r.stderr, (args, r.stdout, r.stderr)
        assert not [e for e in read_events(run.events) if e["type"] == "command"]
        r = _cli("set", d, "temperature=0.7", "reward_weights.correctness=2", "--wait", "--timeout", "120")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "set accepted" in r.stdout and "temperature 1 -> 0.7" in r.stdout, r.stdout
        r = _cli("pause", d, "--wait", "--timeout", "120")
        assert r.returncode == 0 and "pause accepted" in r.stdout and "done" in r.stdout, r.stdout + r.stderr
        paused = wait_for_event(run.events, lambda e: e["type"] == "state" and e["state"] == "paused")
        r = _cli("checkpoint", d, "--wait", "--timeout", "120")  # a paused run writes it at once
        assert r.returncode == 0 and "checkpoint-" in r.stdout, r.stdout + r.stderr
        r = _cli("resume", d, "--wait", "--timeout", "120")
        assert r.returncode == 0 and "done" in r.stdout, r.stdout + r.stderr
        wait_for_event(run.events, lambda e: e["type"] == "step" and e["step"] > paused["step"])
        r = _cli("stop", d, "--wait", "--timeout", "120")
        assert r.returncode == 0 and "stop accepted" in r.stdout, r.stdout + r.stderr
        assert engine.wait(timeout=120) == 0
        assert wait_for_event(run.events, lambda e: e["type"] == "run_end")["status"] == "stopped"
    finally:
        if engine.poll() is None:
            engine.proc.kill()
    r = _cli("pause", d)
    assert r.returncode == 2 and "no engine is running" in r.stderr
