"""Live knobs: a `set` command changes learning rate, temperature, ... at the next step boundary of a real run.

One real tiny engine run (module fixture) is steered through control/: a `set`
is acknowledged, applied, recorded as a `knobs` event and written into
config.json; bad values are refused with the reason; `--resume` keeps the new
values. The same run's random-weight policy gets identical (zero) rewards in
every group and truncates every completion, so the engine's health checks must
fire on it and be written as `health` events.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.event_reader import EventTail, read_events
from grpo_tui.rundir.health import active_warnings
from grpo_tui.rundir.knobs import KnobError, describe_change, validate_knobs
from grpo_tui.rundir.layout import RunDir
from grpo_tui.tui.launcher import launch_engine

NAMES = ["correctness", "int_answer", "soft_format", "xmlcount"]


def test_validate_knobs_cleans_and_refuses_with_the_reason() -> None:
    assert validate_knobs(
        {"learning_rate": "1e-5", "temperature": 0.7, "reward_weights": {"correctness": 2}}, NAMES
    ) == {"learning_rate": 1e-5, "temperature": 0.7, "reward_weights": {"correctness": 2.0}}
    for args, why in [
        ({}, "at least one"),
        ({"learning_rate": 0}, "[train] learning_rate must be"),
        ({"top_p": 1.5}, "[train] top_p must be"),
        ({"temperature": "hot"}, "not a number"),
        ({"beta": float("nan")}, "finite"),
        ({"beta": -1}, "[train] beta must be"),
        ({"reward_weights": {"nope": 1}}, "no reward named 'nope'"),
        ({"lr": 1}, "not a live knob"),
        ({"temperature": True}, "not a number"),
    ]:
        with pytest.raises(KnobError, match=__import__("re").escape(why)):
            validate_knobs(args, NAMES)
    assert describe_change({"learning_rate": 5e-5}, {"learning_rate": 1e-4}) == "learning_rate 0.0001 -> 5e-05"


def _wait(tail: EventTail, seen: list, pred, timeout: float = 240.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen.extend(tail.read_new())
        for ev in seen:
            if pred(ev):
                return ev
        time.sleep(0.1)
    raise AssertionError(f"timed out; last events: {[(e['type'], e.get('status'), e.get('step')) for e in seen[-8:]]}")


@pytest.fixture(scope="module")
def steered_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("knobs") / "run"
    overrides = ["train.max_completion_length=8", "train.lr_scheduler_type=constant", "train.warmup_ratio=0.0"]
    engine = launch_engine("tiny", run_dir, max_steps=7, overrides=overrides)
    try:
        assert engine.wait_started(), engine.preflight_output()
        run = RunDir(run_dir)
        tail, seen = EventTail(run.events), []
        # sent as training starts (set is refused while the model loads), so before the first step ends: a tiny
        # step is ~0.1 s, and waiting for one could let all 7 end before the commands are read
        _wait(tail, seen, lambda e: e["type"] == "state" and e["state"] == "running")
        # refused at once, with the reason: a bad value, and beta on a run that has no reference model
        send_command(run.control, "set", top_p=1.5)
        no_ref = send_command(run.control, "set", beta=0.04)
        ok = send_command(run.control, "set", learning_rate=3e-3, temperature=0.7, reward_weights={"correctness": 2.0})
        _wait(tail, seen, lambda e: e["type"] == "command" and e["id"] == ok and e["status"] == "done")
        _wait(tail, seen, lambda e: e["type"] == "command" and e["id"] == no_ref)
        end = _wait(tail, seen, lambda e: e["type"] == "run_end")
        assert end["status"] == "finished" and engine.wait(timeout=60) == 0
    finally:
        if engine.poll() is None:
            engine.proc.kill()
    return run_dir


def test_set_command_changes_learning_rate_and_temperature_at_the_next_step(steered_run: Path) -> None:
    run = RunDir(steered_run)
    events = read_events(run.events)
    acks = {(e["command"], e["status"], e.get("detail", "")) for e in events if e["type"] == "command"}
    assert any(s == "rejected" and "top_p" in d and "must be a number > 0 and <= 1" in d for c, s, d in acks)
    assert any(s == "rejected" and "beta can't be turned on live" in d for c, s, d in acks)
    done = next(e for e in events if e["type"] == "command" and e["command"] == "set" and e["status"] == "done")
    assert "learning_rate 0.0001 -> 0.003" in done["detail"] and "temperature 1 -> 0.7" in done["detail"]
    knobs = next(e for e in events if e["type"] == "knobs")
    assert knobs["values"] == {"learning_rate": 3e-3, "temperature": 0.7, "reward_weights": {"correctness": 2.0}}
    assert knobs["previous"]["learning_rate"] == 1e-4 and knobs["previous"]["temperature"] == 1.0
    lrs = {e["step"]: e["metrics"]["learning_rate"] for e in events if e["type"] == "step"}
    at = knobs["step"]
    assert all(lr == pytest.approx(1e-4) for s, lr in lrs.items() if s <= at), lrs
    assert all(lr == pytest.approx(3e-3) for s, lr in lrs.items() if s > at), lrs
    assert max(lrs) > at, "at least one step ran after the change"
    cfg = json.loads(run.config.read_text())
    assert cfg["train"]["learning_rate"] == 3e-3 and cfg["train"]["temperature"] == 0.7
    assert cfg["rewards"]["correctness"] == 2.0 and cfg["rewards"]["xmlcount"] == 1.0


def test_engine_writes_health_events_when_rules_fire(steered_run: Path) -> None:
    events = read_events(RunDir(steered_run).events)
    health = [e for e in events if e["type"] == "health"]
    rules = {e["rule"]: e for e in health if e["status"] == "warn"}
    # every group of a random-weight model scores 0 on every reward, and every completion hits the 8-token limit
    assert {"zero_std", "truncation", "length_at_limit"} <= set(rules), health
    z = rules["zero_std"]
    assert z["step"] == 5 and z["value"] == 1.0 and z["threshold"] == 0.5
    assert "[curriculum] dynamic_sampling = true" in z["fix"] and "min_pass_rate" in z["fix"]
    assert rules["truncation"]["step"] == 3 and "max_completion_length" in rules["truncation"]["fix"]
    assert len([e for e in health if e["rule"] == "zero_std"]) == 1, "a rule is written when it changes, not every step"


def test_resume_keeps_the_live_knobs(steered_run: Path) -> None:
    from support.processes import run_engine

    proc = run_engine(
        ["--run-dir", str(steered_run), "--resume", "--max-steps", "10"],
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = read_events(RunDir(steered_run).events)
    start = [e for e in events if e["type"] == "run_start"][-1]
    assert start["resumed"] and start["config"]["train"]["temperature"] == 0.7
    assert start["reward_weights"]["correctness"] == 2.0
    last = [e for e in events if e["type"] == "step"][-1]
    assert last["step"] == 10 and last["metrics"]["learning_rate"] == pytest.approx(3e-3)
    # the resumed engine's health rules see the steps before its checkpoint: the warnings raised there still stand,
    # so three more truncated steps do not raise them a second time
    resumed = max(i for i, e in enumerate(events) if e["type"] == "run_start")
    assert [e for e in events[resumed:] if e["type"] == "health"] == []
    assert {"zero_std", "truncation"} <= set(active_warnings(events))
