"""Steering a live engine through the control channel: pause, checkpoint, resume, switch preset, stop."""

from __future__ import annotations

import time
from pathlib import Path

from support.polling import take_event
from support.processes import write_preset

from grpo_tui.rundir.control import send_command, take_commands
from grpo_tui.rundir.event_reader import EventTail, read_events
from grpo_tui.rundir.layout import RunDir
from grpo_tui.tui.launcher import launch_engine


def test_control_files_are_atomic_and_private(tmp_path):
    from grpo_tui.rundir.control import ensure_control_dir

    d = tmp_path / "control"
    ensure_control_dir(d)
    assert (d.stat().st_mode & 0o777) == 0o700
    cid = send_command(d, "pause")
    (d / "junk.json").write_text("{not json")
    cmds = take_commands(d)
    assert [c["command"] for c in cmds] == ["invalid", "pause"] or [c["command"] for c in cmds] == ["pause", "invalid"]
    assert any(c["id"] == cid for c in cmds) and list(d.iterdir()) == []


def test_pause_checkpoint_resume_switch_stop(tmp_path):
    other = write_preset(
        tmp_path / "tiny-lr.toml",
        'extends = "tiny"\n[train]\nlearning_rate = 3e-3\nlr_scheduler_type = "constant"\nwarmup_ratio = 0.0\n',
    )
    bad = write_preset(tmp_path / "other-model.toml", 'extends = "tiny"\n[model]\ntiny_layers = 3\n')
    run_dir = tmp_path / "run"
    engine = launch_engine(
        "tiny",
        run_dir,
        max_steps=10_000,  # ends with the test's stop (a step is ~0.1 s)
        overrides=["train.max_completion_length=8"],
    )
    try:
        assert engine.wait_started(), engine.preflight_output()
        run = RunDir(run_dir)
        tail, seen = EventTail(run.events), []
        take_event(tail, seen, lambda e: e["type"] == "step" and e["step"] >= 1)

        # pause: acknowledged at once, paused at the next step boundary, and no steps while paused
        cid = send_command(run.control, "pause")
        ack = take_event(tail, seen, lambda e: e["type"] == "command" and e["id"] == cid)
        assert ack["status"] == "accepted"
        paused = take_event(tail, seen, lambda e: e["type"] == "state" and e["state"] == "paused")
        time.sleep(2.0)
        assert not [e for e in tail.read_new() + seen if e["type"] == "step" and e["step"] > paused["step"]]

        # checkpoint while paused: written at once, still paused
        cid = send_command(run.control, "checkpoint")
        ck = take_event(tail, seen, lambda e: e["type"] == "checkpoint")
        assert ck["reason"] == "command" and ck["step"] == paused["step"] and Path(ck["path"]).is_dir()
        take_event(tail, seen, lambda e: e["type"] == "command" and e["id"] == cid and e["status"] == "done")

        send_command(run.control, "resume")
        take_event(tail, seen, lambda e: e["type"] == "state" and e["state"] == "running")
        take_event(tail, seen, lambda e: e["type"] == "step" and e["step"] > paused["step"])

        # a preset with another model shape is refused, with the reason
        cid = send_command(run.control, "switch_preset", preset=str(bad))
        rej = take_event(tail, seen, lambda e: e["type"] == "command" and e["id"] == cid)
        assert rej["status"] == "rejected" and "tiny_layers" in rej["detail"]

        # switch: checkpoint, the same process continues under the new preset, curves go on
        cid = send_command(run.control, "switch_preset", preset=str(other))
        sw = take_event(tail, seen, lambda e: e["type"] == "checkpoint" and e["reason"] == "switch")
        start = take_event(tail, seen, lambda e: e["type"] == "run_start" and e["resumed"])
        assert start["resumed"] and start["preset"] == "tiny-lr" and start["pid"] == engine.pid
        assert start["resume_from"] == sw["path"]
        after = take_event(tail, seen, lambda e: e["type"] == "step" and e["step"] > sw["step"])
        assert after["step"] == sw["step"] + 1
        assert after["metrics"]["learning_rate"] == 3e-3, "the new preset's learning rate applies after a switch"

        send_command(run.control, "stop")
        end = take_event(tail, seen, lambda e: e["type"] == "run_end" and e["status"] != "switched")
        assert end["status"] == "stopped" and end["step"] < 10_000
        assert engine.wait(timeout=60) == 0
    finally:
        if engine.poll() is None:
            engine.proc.kill()
    events = read_events(run.events)
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps == list(range(1, len(steps) + 1)), "one step event per step, across the switch"
    cks = [(e["reason"], e["step"]) for e in events if e["type"] == "checkpoint"]
    assert cks[-1] == ("stop", end["step"])
    assert run.latest_checkpoint().name == f"checkpoint-{end['step']}"


def test_commands_in_one_batch_are_all_handled():
    """[pause, resume] or [pause, stop] arriving before one step boundary: nothing is lost."""
    from types import SimpleNamespace

    from grpo_tui.engine.train.commands import CommandWatcher
    from grpo_tui.engine.train.engine_callback import EngineCallback

    class Events:
        def __init__(self):
            self.log = []

        def emit(self, type, **f):
            self.log.append((type, f.get("command"), f.get("status"), f.get("state")))

        def state(self, state, **f):
            self.emit("state", state=state)

    events = Events()
    watcher = CommandWatcher(Path("/nonexistent"), events)
    cb = EngineCallback(events, watcher, None, [], None, max_steps=10, save_final=False)
    state = SimpleNamespace(global_step=3)

    control = SimpleNamespace(should_save=False, should_training_stop=False)
    for c in ({"id": "a", "command": "pause"}, {"id": "b", "command": "resume"}):
        watcher.queue.put(c)
    cb._handle_commands(state, control)  # returns: the resume in the same batch ended the pause
    assert ("command", "resume", "done", None) in events.log and not control.should_training_stop

    control = SimpleNamespace(should_save=False, should_training_stop=False)
    for c in ({"id": "c", "command": "pause"}, {"id": "d", "command": "stop"}):
        watcher.queue.put(c)
    cb._handle_commands(state, control)
    assert control.should_training_stop and control.should_save

    cb2 = EngineCallback(events, watcher, None, [], None, max_steps=10, save_final=False)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    for c in ({"id": "e", "command": "stop"}, {"id": "f", "command": "pause"}):
        watcher.queue.put(c)
    cb2._handle_commands(state, control)  # a pause after a stop is refused, not parked forever
    assert control.should_training_stop and ("command", "pause", "rejected", None) in events.log


def test_sft_stage_shares_the_state_machine_and_holds_grpo_commands_in_order():
    """SFT acts on pause/resume/stop like GRPO; checkpoint/switch wait for the GRPO stage, in arrival order."""
    import threading
    import time
    from types import SimpleNamespace

    from grpo_tui.engine.train.commands import CommandWatcher
    from grpo_tui.engine.train.sft import make_sft_callback

    log = []

    class Events:
        def emit(self, type, **f):
            log.append((type, f.get("id"), f.get("status"), f.get("state"), f.get("detail")))

        def state(self, state, **f):
            log.append(("state", None, None, state, f.get("detail")))

    watcher = CommandWatcher(Path("/nonexistent"), Events())
    cb = make_sft_callback(Events(), watcher)
    state = SimpleNamespace(global_step=2)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    for c in (
        {"id": "a", "command": "checkpoint"},
        {"id": "b", "command": "pause"},
        {"id": "c", "command": "resume"},
        {"id": "d", "command": "switch_preset", "args": {"preset": "x"}},
    ):
        watcher.queue.put(c)
    done = threading.Thread(target=cb._handle_commands, args=(state, control), daemon=True)
    done.start()
    done.join(30)
    assert not done.is_alive(), "a pause and its resume in one batch must not block"
    assert ("command", "b", "done", None, None) in log and ("command", "c", "done", None, None) in log
    assert ("state", None, None, "paused", "sft step 2") in log and log[-1][3] == "running"
    assert [c["id"] for c in watcher.drain()] == ["a", "d"]  # held for GRPO, in arrival order

    # a command that arrives while paused and that SFT does not handle waits too, behind the earlier ones
    for c in ({"id": "e", "command": "checkpoint"}, {"id": "f", "command": "pause"}):
        watcher.queue.put(c)
    t = threading.Thread(target=cb._handle_commands, args=(state, control), daemon=True)
    t.start()
    while not watcher.paused.is_set():
        time.sleep(0.01)
    watcher.queue.put({"id": "g", "command": "checkpoint"})
    watcher.queue.put({"id": "h", "command": "stop"})
    t.join(30)
    assert not t.is_alive() and control.should_training_stop and cb.stopped
    assert [c["id"] for c in watcher.drain()] == ["e", "g"]


def test_a_command_accepted_after_the_last_boundary_is_answered_when_the_run_ends():
    """A `set` sent during the last step (or a pause after it) is accepted, then no boundary comes: closing the
    watcher rejects it with the reason, so no UI waits on it forever."""
    from grpo_tui.engine.train.commands import CommandWatcher

    log = []

    class Events:
        def emit(self, type, **f):
            log.append((type, f.get("id"), f.get("command"), f.get("status"), f.get("detail")))

        def state(self, state, **f):
            log.append(("state", None, None, state, None))

    watcher = CommandWatcher(Path("/nonexistent"), Events())
    watcher.check_set = lambda args: args
    watcher.start()
    watcher.submit({"id": "k", "command": "set", "args": {"temperature": 0.5}})
    watcher.submit({"id": "p", "command": "pause"})
    assert ("command", "k", "set", "accepted", None) in log and ("command", "p", "pause", "accepted", None) in log
    watcher.close()
    assert not watcher.is_alive()
    assert [e[1:4] for e in log if e[3] == "rejected"] == [("k", "set", "rejected"), ("p", "pause", "rejected")]
    assert all("ended before its next step boundary" in e[4] for e in log if e[3] == "rejected")
    watcher.close()  # a second close answers nothing twice
    assert len([e for e in log if e[3] == "rejected"]) == 2
