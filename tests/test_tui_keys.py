"""Keys that cannot hurt a live run by accident, the help screen, the preset picker and the dialogs at 80x24
(Pilot tests and snapshots on synthetic run directories; this test process plays a live engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.dashboard import control_commands, dashboard, wait_for
from support.synthetic import SyntheticRun, write_synthetic_run

SIZE = (140, 45)
# A paragraph with Enter and Tab in it, and every key the dashboard's footer offers (and the dialogs' letters).
PARAGRAPH = (
    "Then we add 7 and 8 <answer>15</answer>\n\tso qvpcswkmg[],.f r?yn l ESC-free: p s \nStop? y\n\t\tq s w k p c\n"
)
KEYS = {
    "\n": "enter",
    "\t": "tab",
    " ": "space",
    "<": "less_than_sign",
    ">": "greater_than_sign",
    "/": "slash",
    "[": "left_square_bracket",
    "]": "right_square_bracket",
    ",": "comma",
    ".": "full_stop",
    "?": "question_mark",
    "-": "minus",
    ":": "colon",
}


def paragraph_keys() -> list[str]:
    return [KEYS.get(ch, ch) for ch in PARAGRAPH]


def _live(synthetic_run) -> SyntheticRun:
    return synthetic_run(steps=3, alive=True, finished=False)


def test_the_playground_keeps_every_key_from_the_run(synthetic_run) -> None:
    """r, then a paragraph with Tab and Enter (focus leaves the editor): no key reaches the dashboard."""
    from grpo_tui.tui.playground_screen import PlaygroundScreen

    run = _live(synthetic_run)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, PlaygroundScreen), what="playground")
            await pilot.press(*paragraph_keys())
            await pilot.pause(0.2)
            assert isinstance(app.screen, PlaygroundScreen)
            assert control_commands(run.run.control) == []
            for key in ("tab", "s", "enter", "tab", "p", "tab", "s", "y", "w", "k", "question_mark"):
                await pilot.press(key)
            assert isinstance(app.screen, PlaygroundScreen) and control_commands(run.run.control) == []
            await pilot.press("escape")
            assert app.screen is app.default_screen

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_stop_takes_y_only_enter_and_tab_do_nothing(synthetic_run) -> None:
    from grpo_tui.tui.components.dialogs import ConfirmStop, QuitDialog

    run = _live(synthetic_run)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            await pilot.press("s", "enter", "tab", "enter", "space")
            assert isinstance(app.screen, ConfirmStop) and control_commands(run.run.control) == []
            await pilot.press("n")
            assert app.screen is app.default_screen
            await pilot.press("q", "enter", "tab", "enter")
            assert isinstance(app.screen, QuitDialog) and control_commands(run.run.control) == []
            await pilot.press("escape", "s", "y")
            assert control_commands(run.run.control) == ["stop"]

    app = dashboard(run.run.root)
    asyncio.run(go())


@pytest.mark.parametrize("key", ["w", "k"])
def test_a_paragraph_typed_into_a_dialog_sends_nothing(synthetic_run, monkeypatch, key: str) -> None:
    """Each text box of the switch and knobs dialogs (Tab moves between them)."""
    from textual.widgets import Input

    monkeypatch.setattr("grpo_tui.tui.switch_choices._has_gpu", lambda: False)
    run = _live(synthetic_run)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen is not app.default_screen, what="the dialog")
            dialog = app.screen
            inputs = list(dialog.query(Input))
            assert inputs
            for _ in inputs:
                await pilot.press(*paragraph_keys())
            await pilot.pause(0.2)
            assert app.screen is dialog, "typing never closes the dialog"
            assert control_commands(run.run.control) == []
            await pilot.press("escape")
            assert app.screen is app.default_screen and control_commands(run.run.control) == []

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_a_finished_run_offers_no_controls(synthetic_run) -> None:
    run = synthetic_run(steps=3, finished=True)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.state == "finished", what="finished")
            await pilot.pause(0.2)
            for action in ("pause", "resume", "checkpoint", "stop", "switch_preset", "knobs"):
                assert app.check_action(action, ()) is False, action
            footer = " ".join(a.binding.description for a in app.screen.active_bindings.values() if a.binding.show)
            assert "Quit" in footer and "Help" in footer
            assert not any(word in footer for word in ("Pause", "Checkpoint", "Stop", "Switch", "Knobs"))
            await pilot.press("s", "p", "c", "w", "k")
            assert app.screen is app.default_screen and control_commands(run.run.control) == []

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_help_lists_every_key_rule_and_knob(synthetic_run) -> None:
    from grpo_tui.rundir.health import RULE_INFO
    from grpo_tui.rundir.knobs import KNOBS
    from grpo_tui.tui.app import Dashboard
    from grpo_tui.tui.help import HelpScreen

    run = synthetic_run(steps=2, alive=True, finished=False)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2] and app.link.alive, what="live run")
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            text = app.screen.text
            for b in Dashboard.BINDINGS:
                if b.show or b.tooltip:  # "Next step" is the second half of "[ ] Step"
                    assert b.description in text and (b.tooltip or "") in text, b
            for rule in RULE_INFO:
                assert rule in text
            for knob in KNOBS:
                assert knob in text
            assert "Group rewards" in text and "all totals equal" in text  # a panel and a colour
            await pilot.press(*"spcwkrmgvf", "enter", "tab", "enter")  # the help screen's keys are its own
            assert isinstance(app.screen, HelpScreen) and control_commands(run.run.control) == []
            await pilot.press("escape")
            assert app.screen is app.default_screen
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("question_mark")
            assert app.screen is app.default_screen

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_the_preset_picker_filters_explains_and_ignores_the_running_preset(synthetic_run, monkeypatch) -> None:
    from textual.widgets import OptionList

    from grpo_tui.tui.components.dialogs import PresetPicker

    monkeypatch.setattr("grpo_tui.tui.switch_choices._has_gpu", lambda: False)
    run = synthetic_run(steps=3, alive=True, finished=False, preset="tiny")

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker), what="picker")
            picker = app.screen
            options = picker.query_one("#preset-list", OptionList)
            everything = options.option_count
            await pilot.press(*"gpu24")
            assert 0 < options.option_count < everything
            assert all("gpu24" in c.name for c in picker.shown)
            await pilot.press("enter")  # a GPU preset on a machine without one: explained, not sent
            assert isinstance(app.screen, PresetPicker)
            assert "needs a GPU" in str(picker.query_one("#preset-why").render())
            await pilot.press("ctrl+a", "ctrl+k", *"tiny")
            assert [c.name for c in picker.shown] == ["tiny"] and picker.shown[0].running
            await pilot.press("enter")  # the running preset: nothing to do
            assert isinstance(app.screen, PresetPicker) and control_commands(run.run.control) == []
            await pilot.press("ctrl+a", "ctrl+k", *"cpu-demo", "enter")
            assert control_commands(run.run.control) == ["switch_preset"]

    app = dashboard(run.run.root)
    asyncio.run(go())


# ------------------------------------------------------------------ 80x24: buttons and boxes on screen


def _on_screen(app, selector: str) -> bool:
    w = app.screen.query_one(selector)
    r, size = w.region, app.size
    return r.width > 0 and r.height > 0 and r.x >= 0 and r.y >= 0 and r.right <= size.width and r.bottom <= size.height


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_dialogs_fit_the_terminal(synthetic_run, monkeypatch, size) -> None:
    from grpo_tui.tui.components.dialogs import KnobsDialog, PresetPicker

    monkeypatch.setattr("grpo_tui.tui.switch_choices._has_gpu", lambda: False)
    run = _live(synthetic_run)

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, KnobsDialog), what="knobs")
            await pilot.pause(0.2)
            assert _on_screen(app, "#apply") and _on_screen(app, "#cancel") and _on_screen(app, "#knob-learning_rate")
            assert "learning_rate:" in str(app.screen.query_one("#knob-help").render())  # the focused knob's help
            await pilot.press("escape", "w")
            await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker), what="picker")
            await pilot.pause(0.2)
            assert _on_screen(app, "#preset-input") and _on_screen(app, "#preset-why")
            await pilot.press("escape", "question_mark")
            await pilot.pause(0.2)
            assert _on_screen(app, "#help-scroll")

    app = dashboard(run.run.root)
    asyncio.run(go())


def _snapshot_run(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("grpo_tui.tui.switch_choices._has_gpu", lambda: False)
    write_synthetic_run(Path("runs/snapshot"), 6, seed=3, max_steps=12)
    return Path("runs/snapshot")


def _opened(app, screen: str):
    async def ready(pilot) -> None:
        from grpo_tui.tui.components.dialogs import KnobsDialog, PresetPicker
        from grpo_tui.tui.switch_choices import switch_choices

        await wait_for(pilot, lambda: app.state.steps and app.rollouts.steps and app.updates, what="history")
        if screen == "help":
            await pilot.press("question_mark")
        elif screen == "knobs":  # a finished run offers no k: open the dialog itself
            app.push_screen(KnobsDialog(app.state.knobs_now(), list(app.state.reward_names)))
        else:
            app.push_screen(PresetPicker(switch_choices({}, "tiny"), "tiny"))
        await pilot.pause(0.3)
        from textual.widgets import Input

        for field in app.screen.query(Input):  # a blinking cursor would make the picture depend on the moment
            field.cursor_blink = False
        await pilot.pause(0.3)

    return ready


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
@pytest.mark.parametrize("screen", ["help", "knobs", "switch"])
def test_new_screens_snapshot(snap_compare, tmp_path: Path, monkeypatch, screen: str, size) -> None:
    app = dashboard(_snapshot_run(tmp_path, monkeypatch))
    assert snap_compare(app, terminal_size=size, run_before=_opened(app, screen))


def test_a_paused_run_stays_paused_across_a_switch(tmp_path: Path, monkeypatch) -> None:
    """A real tiny engine, paused, then switched: the engine under the new preset holds before its first step."""
    import time

    from support.paths import REPO
    from support.processes import engine_env

    from grpo_tui.rundir.control import send_command
    from grpo_tui.rundir.event_reader import read_events
    from grpo_tui.tui.launcher import launch_engine

    monkeypatch.chdir(REPO)
    for k, v in engine_env().items():
        monkeypatch.setenv(k, v)
    preset = tmp_path / "tiny-lr.toml"
    preset.write_text(
        'extends = "tiny"\n[preset]\ndescription = "tiny, another learning rate"\n[train]\nlearning_rate = 5e-5\n'
    )
    run_dir = tmp_path / "run"
    engine = launch_engine("tiny", run_dir, 10_000, ["train.max_completion_length=8"])

    def events() -> list[dict]:
        return read_events(run_dir / "events.jsonl") if (run_dir / "events.jsonl").exists() else []

    def until(pred, what: str, timeout: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = events()
            if pred(evs):
                return evs
            assert engine.poll() is None, f"the engine exited while waiting for {what}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def steps(evs: list[dict]) -> list[int]:
        return [e["step"] for e in evs if e["type"] == "step"]

    try:
        until(lambda evs: steps(evs), "the first step")
        send_command(run_dir / "control", "pause")
        until(lambda evs: any(e["type"] == "state" and e.get("state") == "paused" for e in evs), "paused")
        send_command(run_dir / "control", "switch_preset", preset=str(preset))

        def last_state(evs: list[dict]) -> str | None:
            return next((e.get("state") for e in reversed(evs) if e["type"] == "state"), None)

        evs = until(
            lambda evs: sum(e["type"] == "run_start" for e in evs) == 2 and last_state(evs) == "paused",
            "paused after the switch",
        )
        at = steps(evs)[-1]
        time.sleep(3)
        evs = events()
        assert steps(evs)[-1] == at, "no step ran under the new preset while paused"
        assert last_state(evs) == "paused"
        send_command(run_dir / "control", "resume")
        until(lambda evs: steps(evs)[-1] > at, "a step after resuming")
        send_command(run_dir / "control", "stop")
        assert engine.wait(120) == 0
    finally:
        if engine.poll() is None:
            engine.proc.kill()


def test_switch_choices_name_why_a_preset_cannot_continue_a_run() -> None:
    from grpo_tui.tui.switch_choices import switch_choices

    run = {"model": {"name": "tiny-random", "lora": False}}
    choices = {c.name: c for c in switch_choices(run, "tiny")}
    assert choices["tiny"].running and choices["tiny"].problem is None
    assert "[model] name = 'smollm2-135m-instruct', this run has 'tiny-random'" == choices["cpu-demo"].problem
