"""The full stack: the dashboard starts a real tiny engine and steers it through every control
(pause, resume, checkpoint, switch preset, stop). It takes about a minute, so it has its own file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.dashboard import wait_for
from support.paths import REPO
from support.processes import engine_env

from grpo_tui.rundir.event_reader import read_events

SIZE = (140, 45)


def test_full_stack_pause_resume_checkpoint_switch_stop(tmp_path: Path, monkeypatch) -> None:
    """The app starts a real tiny engine and steers it through every control."""
    from grpo_tui.tui.components.dialogs import PresetPicker
    from grpo_tui.tui.launcher import launch_engine

    monkeypatch.chdir(REPO)
    for k, v in engine_env().items():
        monkeypatch.setenv(k, v)
    preset = tmp_path / "tiny-lr.toml"
    preset.write_text(
        'extends = "tiny"\n[preset]\ndescription = "tiny, another learning rate"\n[train]\nlearning_rate = 5e-5\n'
    )
    run_dir = tmp_path / "run"
    engine = launch_engine("tiny", run_dir, 10_000, ["train.max_completion_length=16"])  # stopped by the test

    def ack(command: str, status: str) -> bool:  # as the app saw it
        return any(c.command == command and c.status == status for c in app.state.commands.values())

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps, timeout=120, what="first step")
            await pilot.press("p")
            await wait_for(pilot, lambda: app.state.state == "paused", timeout=60, what="paused")
            paused_at = app.state.step
            await pilot.pause(1.5)
            assert app.state.step == paused_at and app.state.state == "paused"
            await pilot.press("p")
            await wait_for(pilot, lambda: app.state.step > paused_at, timeout=60, what="resumed")
            await pilot.press("c")
            await wait_for(pilot, lambda: ack("checkpoint", "done"), timeout=60, what="checkpoint")
            await wait_for(pilot, lambda: app.state.last_checkpoint, timeout=10, what="checkpoint event")
            assert app.state.last_checkpoint["reason"] == "command"
            assert ack("pause", "done") and ack("resume", "done")

            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker) and app.screen.query("#preset-input"))
            await pilot.click("#preset-input")
            await pilot.press(*str(preset), "enter")
            await wait_for(pilot, lambda: app.state.run_starts == 2, timeout=120, what="run under the new preset")
            assert app.state.run_start["resumed"] and app.state.run_start["preset"] in ("tiny-lr", str(preset))
            switched_at = app.state.last_checkpoint["step"]
            assert app.state.last_checkpoint["reason"] == "switch"
            await wait_for(pilot, lambda: app.state.step > switched_at, timeout=120, what="steps after the switch")
            assert app.state.steps == list(range(1, app.state.step + 1))  # the curves continue

            await pilot.press("s", "y")
            await wait_for(pilot, lambda: app.state.run_end is not None, timeout=90, what="stopped")
            assert app.state.run_end["status"] == "stopped" and app.state.last_checkpoint["reason"] == "stop"
            assert ack("switch_preset", "done") and ack("stop", "done")
            events = read_events(run_dir / "events.jsonl")
            assert [e["preset"] for e in events if e["type"] == "run_start"] == ["tiny", app.state.preset]
            await wait_for(pilot, lambda: not app.link.alive, timeout=30, what="engine exit")
            await pilot.press("q")
        assert app.return_code == 0
        assert engine.wait(30) == 0

    from grpo_tui.tui.app import Dashboard

    app = Dashboard(run_dir, engine=engine, poll_interval=0.1)
    try:
        asyncio.run(go())
    finally:
        if engine.poll() is None:
            engine.proc.kill()
