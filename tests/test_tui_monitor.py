"""The dashboard as a health monitor: metric-group curves with a picker, health warnings, the
live-knobs dialog and knob-change markers (Pilot tests on synthetic run directories)."""

from __future__ import annotations

import asyncio
import json

from support.dashboard import control_commands, dashboard, wait_for
from support.synthetic import SyntheticRun

SIZE = (140, 45)


def _legends(app) -> str:
    return str(app.query_one("#reward-legend").render()) + " | " + str(app.query_one("#signal-legend").render())


def test_curve_groups_cycle_with_g_and_draw_every_logged_metric(synthetic_run) -> None:
    from grpo_tui.tui.components.curves import CurvePlot, RewardCurves

    run: SyntheticRun = synthetic_run(steps=0, finished=False)
    for step in range(1, 6):
        run.write_step()  # the synthetic steps log kl and the clip ratios, as a beta > 0 run does
    run.events.emit(
        "step",
        step=6,
        max_steps=60,
        metrics={
            "loss": 0.01,
            "kl": 0.02,
            "entropy": 0.9,
            "clip_ratio/region_mean": 0.01,
            "grad_norm": 0.4,
            "learning_rate": 2e-4,
            "completions/mean_length": 50.0,
            "completions/min_length": 10.0,
            "completions/max_length": 96.0,
            "completions/clipped_ratio": 0.1,
        },
    )
    run.finish()

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.steps) == 6, what="steps")
            await pilot.pause(0.3)
            assert "total" in _legends(app)
            curves = app.query_one(RewardCurves)
            seen = {}
            for expected in ("policy", "optimizer", "lengths", "rewards"):
                builds = [p.builds for p in app.query(CurvePlot)]
                await pilot.press("g")
                await pilot.pause(0.3)
                assert curves.group_name == expected
                assert expected in str(app.query_one("#curves").border_title)
                assert [p.builds for p in app.query(CurvePlot)] > builds, "the plots were rebuilt for the group"
                seen[expected] = _legends(app)
            assert "loss" in seen["policy"] and "kl(right)" in seen["policy"] and "entropy" in seen["policy"]
            assert "clip-region(right)" in seen["policy"]
            assert "grad-norm" in seen["optimizer"] and "learning-rate" in seen["optimizer"]
            assert "mean" in seen["lengths"] and "max" in seen["lengths"] and "truncated" in seen["lengths"]
            assert "total" in seen["rewards"] and "zero-std-groups" in seen["rewards"]
            assert app.state.column("grad_norm")[-1] == 0.4 and app.state.column("kl")[-1] == 0.02
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Curves: rewards", "Curves: policy", "Curves: optimizer", "Curves: lengths"} <= titles

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_health_warnings_show_in_a_panel_and_clear(synthetic_run) -> None:
    from grpo_tui.tui.components.health_panel import HealthPanel

    run: SyntheticRun = synthetic_run(steps=3, alive=True, finished=False)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.steps) == 3, what="steps")
            panel = app.query_one(HealthPanel)
            assert not panel.display, "no warnings: no panel"
            run.events.emit(
                "health",
                step=3,
                rule="zero_std",
                status="warn",
                value=0.9,
                threshold=0.5,
                diagnosis="90%+ of groups had identical rewards [bold]x[/bold]",
                fix="set [curriculum] dynamic_sampling = true",
            )
            await wait_for(pilot, lambda: panel.display, what="panel shown")
            text = str(panel.render())
            assert "zero_std" in text and "[bold]x[/bold]" in text, "run text is shown as text, not markup"
            assert "[curriculum] dynamic_sampling = true" in text
            assert any("zero_std" in str(n.message) for n in app._notifications)
            run.events.emit("health", step=4, rule="zero_std", status="ok", diagnosis="", fix="")
            await wait_for(pilot, lambda: not panel.display, what="panel hidden")

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_knobs_dialog_sends_a_set_command_and_the_change_is_marked(synthetic_run) -> None:
    from textual.widgets import Input

    from grpo_tui.tui.components.dialogs import KnobsDialog

    run: SyntheticRun = synthetic_run(steps=3, alive=True, finished=False)
    control = run.run.control

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.steps) == 3 and app.link.alive, what="live run")
            assert "Change live knobs" in {c.title for c in app.get_system_commands(app.screen)}
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, KnobsDialog) and app.screen.query(Input))
            dialog = app.screen
            assert dialog.query_one("#knob-learning_rate", Input).value == "0.0002"
            assert dialog.query_one("#weight-0", Input).value == "1"
            # a bad value is refused in the dialog with the engine's reason; nothing is sent
            temp = dialog.query_one("#knob-temperature", Input)
            temp.focus()
            temp.value = ""
            await pilot.press(*"-1", "enter")
            await pilot.pause(0.1)
            assert isinstance(app.screen, KnobsDialog)
            assert "[train] temperature must be" in str(dialog.query_one("#knobs-error").render())
            assert control_commands(control) == []
            temp.value = ""
            await pilot.press(*"0.7")
            weight = dialog.query_one("#weight-0", Input)
            weight.focus()
            weight.value = ""
            await pilot.press("2", "enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, KnobsDialog), what="dialog closed")
            assert control_commands(control) == ["set"]
            cmd = json.loads(next(control.glob("*.json")).read_text())
            assert cmd["args"] == {"temperature": 0.7, "reward_weights": {"correctness": 2.0}}
            # the engine's acknowledgement and record: a marker on the curves, the dialog shows the new values
            run.events.emit(
                "command", id=cmd["id"], command="set", status="done", detail="temperature 1 -> 0.7 from step 4"
            )
            run.events.emit("knobs", step=3, id=cmd["id"], values=cmd["args"], previous={"temperature": 1.0})
            await wait_for(pilot, lambda: app.state.knob_changes, what="knobs event")
            await pilot.pause(2.0)  # the curves redraw at most every CURVE_MIN_INTERVAL
            assert "knob-change" in _legends(app)
            assert app.state.knobs_now()["temperature"] == 0.7
            assert app.state.knobs_now()["reward_weights"]["correctness"] == 2.0
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, KnobsDialog) and app.screen.query(Input))
            assert app.screen.query_one("#knob-temperature", Input).value == "0.7"
            await pilot.press("escape")
            assert control_commands(control) == ["set"]

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_a_timer_that_fires_while_the_app_shuts_down_is_harmless(synthetic_run) -> None:
    """At shutdown Textual removes the widgets before it stops the app's timers: a status tick or a curves redraw
    that fires in between found no widget and crashed the app (seen once in a clean-clone run of the suite)."""
    import time

    from grpo_tui.tui.app import TICK
    from grpo_tui.tui.components.curves import RewardCurves
    from grpo_tui.tui.components.status_panel import StatusPanel

    run: SyntheticRun = synthetic_run(steps=3, alive=True, finished=False)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.steps) == 3 and app.link.alive, what="live run")
            await app.query_one(StatusPanel).remove()
            await app.query_one(RewardCurves).remove()
            app._last_curves = time.monotonic()
            app._schedule_curves()  # due in CURVE_MIN_INTERVAL: a timer, not a redraw now
            assert app._curves_due
            await pilot.pause(TICK + 2.0)  # the tick and the curves timer both fire
            assert not app._curves_due, "the curves timer fired"

    app = dashboard(run.run.root)
    asyncio.run(go())  # run_test re-raises an exception from the app's timers
