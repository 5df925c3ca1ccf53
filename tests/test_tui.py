"""The Textual dashboard: its data model, the rollout tail, Pilot tests on real and synthetic run
directories and a snapshot of the main screen. The full stack (the app steering a real engine) is in
test_tui_fullstack.py."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from support.dashboard import control_commands, dashboard, wait_for
from support.paths import REPO
from support.processes import TinyRun
from support.synthetic import SyntheticRun, write_synthetic_run

from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.rollouts import CompletionRecord, RolloutIndex, RolloutTail, RolloutWriter
from grpo_tui.rundir.state import REWARD, RunState, reward_key
from grpo_tui.tui.components.completion_view import highlight_completion
from grpo_tui.tui.components.curves import downsample, smooth

SIZE = (140, 45)


# ------------------------------------------------------------------ pure parts


def test_model_folds_a_recorded_run(tiny_run: TinyRun) -> None:
    m = RunState()
    changed = m.apply(read_events(tiny_run.dir / "events.jsonl"))
    assert {"curves", "status", "memory"} <= changed
    assert m.steps == [1, 2, 3] and m.max_steps == 3 and m.state == "finished"
    assert m.reward_names == ["correctness", "xmlcount", "distinct_chars", "crashy"]  # test_preset's
    assert len(m.column(REWARD)) == 3 and len(m.column(reward_key("xmlcount"))) == 3
    assert m.last_checkpoint["reason"] == "final" and not m.active and not m.failed
    assert m.memory and m.memory[-1]["rss_gb"] > 0


def test_model_rewinds_when_a_resumed_engine_repeats_steps() -> None:
    m = RunState()
    step = lambda n, r: {"type": "step", "step": n, "metrics": {"reward": r}}  # noqa: E731
    m.apply([step(1, 0.1), step(2, 0.2), step(3, 0.3), {"type": "run_start", "resumed": True}, step(3, 0.9)])
    assert m.steps == [1, 2, 3] and m.column(REWARD) == [0.1, 0.2, 0.9]


def test_a_preset_switch_is_not_the_end_of_the_run() -> None:
    m = RunState()
    m.apply(
        [
            {"type": "run_start", "preset": "a"},
            {"type": "state", "state": "running"},
            {"type": "state", "state": "starting", "detail": "switching to preset b"},
            {"type": "run_end", "status": "switched", "next_preset": "b"},
        ]
    )
    assert m.active and m.run_end is None and "b" in m.state_detail
    m.apply([{"type": "run_start", "preset": "b", "resumed": True}])
    assert m.preset == "b" and m.run_starts == 2


def test_downsample_bounds_points_and_smooth_keeps_gaps() -> None:
    xs = list(range(1, 20_001))
    dx, dy = downsample(xs, [float(x % 7) for x in xs], 100)
    assert len(dx) == len(dy) == 100 and dx[0] < dx[-1]
    assert downsample([1, 2, 3], [1.0, None, 3.0], 100) == ([1.0, 3.0], [1.0, 3.0])
    assert smooth([1.0, None, 1.0], 0.8) == [1.0, None, 1.0]


def test_rollout_tail_waits_for_a_whole_line_and_indexes_by_step(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    w = RolloutWriter(path)
    comp = CompletionRecord(
        text="x", extracted="1", correct=True, rewards={"a": 1.0}, total=1.0, advantage=0.0, tokens=1, truncated=False
    )
    for step in (1, 2):
        for g in range(3):
            w.write_group(step, g, f"q{step}{g}", "1", [comp])
    w.flush()
    with open(path, "a") as f:
        f.write('{"v": 1, "step": 3, "group": 0, "prompt": "half')  # an engine killed mid-write
    tail, index = RolloutTail(path), RolloutIndex(path, cache_steps=1)
    assert index.add(tail.read_new()) == {1, 2} and index.steps == [1, 2]
    assert [g["prompt"] for g in index.groups(1)] == ["q10", "q11", "q12"]  # read back from disk
    with open(path, "a") as f:
        f.write('", "gold": "2", "completions": []}\n')
    assert index.add(tail.read_new()) == {3} and index.groups(3)[0]["gold"] == "2"
    w.write_group(2, 1, "again", "1", [comp])  # a resumed engine re-records a group
    w.flush()
    index.add(tail.read_new())
    assert [g["prompt"] for g in index.groups(2)] == ["q20", "again", "q22"]


def test_highlight_colours_tags_and_marks_the_extracted_answer() -> None:
    text = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>"
    t = highlight_completion(text, "7", True)
    assert t.plain == text
    marked = [t.plain[s.start : s.end] for s in t.spans if "on green" in str(s.style)]
    assert marked == ["7"] and t.plain.rfind("7") == next(s.start for s in t.spans if "on green" in str(s.style))
    assert any(t.plain[s.start : s.end] == "<answer>" for s in t.spans)


def test_engine_and_tui_init_do_not_import_textual() -> None:
    code = (
        "import sys, grpo_tui.engine.run, grpo_tui.rundir.events, grpo_tui.rundir.event_writer, "
        "grpo_tui.rundir.event_reader, grpo_tui.rundir.rollouts, grpo_tui.rundir.state, grpo_tui.tui, "
        "grpo_tui.tui.launcher, grpo_tui.tui.headless; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'plotext')]"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------ Pilot tests


def test_dashboard_shows_a_recorded_engine_run(tiny_run: TinyRun) -> None:
    from grpo_tui.tui.components.completion_view import CompletionView
    from grpo_tui.tui.components.curves import CurvePlot
    from grpo_tui.tui.components.group_table import GroupTable

    async def go() -> None:
        app = dashboard(tiny_run.dir)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.rollouts.steps, what="history")
            await pilot.pause(0.3)
            plots = list(app.query(CurvePlot))
            assert len(plots) == 2 and all(p.builds >= 1 for p in plots)
            from grpo_tui.tui.components.status_panel import StatusPanel

            status = str(app.query_one(StatusPanel).render())
            assert "Step time" in status and "generate" in status and "gen " in status  # phase_s breakdown
            assert "% of bound" in status  # generation speed against the memory-bandwidth bound
            groups = app.query_one(GroupTable)
            assert groups.step == 3 and groups.follow and groups.table.row_count == 4  # tiny: G = 4
            view = app.query_one(CompletionView)
            first = groups.current_group
            assert view.text.startswith("step 3 · group 0 · completion 1/4") and f"gold {first['gold']}" in view.text
            await pilot.press("down")
            assert "completion 2/4" in view.text
            await pilot.press("left_square_bracket")
            assert groups.step == 2 and not groups.follow and "step 2" in view.text
            await pilot.press("full_stop")
            assert groups.group_pos == 1 and groups.current_group["group"] == 1
            await pilot.press("f")
            assert groups.step == 3 and groups.follow
            builds = plots[0].builds
            await pilot.press("m")
            await pilot.pause(0.1)
            assert app.query_one("RewardCurves").smoothing and plots[0].builds > builds
            # a finished run can't be steered: the controls are gone from the footer and write nothing
            assert app.check_action("pause", ()) is False
            await pilot.press("p", "c")
            assert control_commands(tiny_run.dir / "control") == []
            assert "finished" in app.title
            await pilot.press("q")  # nothing to leave running: quits at once
        assert app.return_code == 0

    asyncio.run(go())


def test_controls_send_commands_and_show_acknowledgements(synthetic_run) -> None:
    from grpo_tui.tui.components.dialogs import ConfirmStop, PresetPicker, QuitDialog
    from grpo_tui.tui.components.status_panel import StatusPanel

    run: SyntheticRun = synthetic_run(steps=3, alive=True, finished=False)
    control = run.run.control

    def status() -> str:
        return str(app.query_one(StatusPanel).render())

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2, 3] and app.link.alive, what="live run")
            palette = {c.title for c in app.get_system_commands(app.screen)}
            assert {
                "Pause training",
                "Checkpoint now",
                "Stop training",
                "Switch preset",
                "Toggle smoothing",
                "Quit",
            } <= palette and "Resume training" not in palette
            await pilot.press("p")
            assert control_commands(control) == ["pause"]
            cid = json.loads(next(control.glob("*.json")).read_text())["id"]
            assert "pause: sent" in status()
            run.events.emit("command", id=cid, command="pause", status="accepted")
            run.events.state("pausing")
            await wait_for(pilot, lambda: "pausing" in status(), what="pausing")
            assert app.check_action("resume", ()) and not app.check_action("pause", ())
            run.events.state("paused", step=3)
            run.events.emit("command", id=cid, command="pause", status="done")
            await wait_for(pilot, lambda: app.state.state == "paused", what="paused")
            assert "Resume training" in {c.title for c in app.get_system_commands(app.screen)}
            await pilot.press("p")  # now p resumes
            assert control_commands(control)[-1] == "resume"
            await pilot.press("c")
            assert control_commands(control)[-1] == "checkpoint"

            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStop) and app.screen.query("Button"))
            await pilot.press("n")
            assert "stop" not in control_commands(control)
            await pilot.press("s", "y")
            assert control_commands(control)[-1] == "stop"

            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker) and app.screen.query("#preset-input"))
            first = next(c.name for c in app.screen.choices if c.problem is None and not c.running)
            await pilot.press("enter")  # the first preset this run can switch to is highlighted
            assert control_commands(control)[-1] == "switch_preset"
            args = [json.loads(p.read_text())["args"] for p in sorted(control.glob("*.json"))]
            assert args[-1] == {"preset": first}
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, PresetPicker) and app.screen.query("#preset-input"))
            n = len(control_commands(control))
            await pilot.press(*"my.toml", "enter")  # no such file: said in the dialog, nothing sent
            assert isinstance(app.screen, PresetPicker) and len(control_commands(control)) == n
            mine = run.run.root.parent / "my.toml"
            mine.write_text("")
            await pilot.press("ctrl+a", "ctrl+k", *str(mine), "enter")
            assert json.loads(sorted(control.glob("*.json"))[-1].read_text())["args"] == {"preset": str(mine)}

            last = json.loads(sorted(control.glob("*.json"))[-1].read_text())["id"]
            run.events.emit(
                "command", id=last, command="switch_preset", status="rejected", detail="preset my.toml: file not found"
            )
            await wait_for(pilot, lambda: "rejected" in status(), what="rejection")
            assert "file not found" in status()
            assert any("rejected" in str(n.message) for n in app._notifications)

            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog) and app.screen.query("Button"))
            await pilot.press("escape")
            assert not isinstance(app.screen, QuitDialog)
            n = len(control_commands(control))
            await pilot.press("q", "l")  # leave running
        assert app.left_running and len(control_commands(control)) == n

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_quit_and_stop_sends_stop(synthetic_run) -> None:
    run = synthetic_run(steps=1, alive=True, finished=False)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.link.alive and app.state.steps, what="live run")
            await pilot.press("q", "s")
        assert control_commands(run.run.control) == ["stop"] and not app.left_running

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_a_failed_engine_shows_its_traceback_and_keeps_the_history(synthetic_run) -> None:
    from grpo_tui.tui.components.error_panel import ErrorPanel

    run = synthetic_run(steps=4, alive=False, finished=False)
    run.run.engine_log.write_text("step 4/60 reward=1.0\nRuntimeError: CUDA out of memory (log line)\n")
    tb = (
        'Traceback (most recent call last):\n  File "engine/train/grpo.py", line 1, in step\n'
        "RuntimeError: CUDA out of memory"
    )
    run.events.emit("error", message="RuntimeError: CUDA out of memory", traceback=tb)
    run.events.state("failed", step=4)
    run.events.emit("run_end", status="failed", step=4, exit_code=1, elapsed_s=4.0)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.failed, what="failure")
            panel = app.query_one(ErrorPanel)
            assert panel.has_class("-visible") and panel.display
            text = str(app.query_one("#error-text").render())
            assert "CUDA out of memory" in text and 'File "engine/train/grpo.py"' in text and "(log line)" in text
            assert app.state.steps == [1, 2, 3, 4] and app.rollouts.steps == [1, 2, 3, 4]
            assert "failed" in app.title
            await pilot.press("q")
        assert app.return_code == 1

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_an_engine_that_vanishes_shows_as_gone(synthetic_run, monkeypatch) -> None:
    import grpo_tui.tui.run_follower as run_follower

    monkeypatch.setattr(run_follower, "GONE_AFTER", 0.3)
    run = synthetic_run(steps=2, alive=False, finished=False)  # log says running, no process
    run.run.engine_log.write_text("Killed\n")

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.link.gone, what="gone")
            assert "engine gone" in app.title
            assert "Killed" in str(app.query_one("#error-text").render())

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_a_preflight_error_is_shown_and_returned(tmp_path: Path, monkeypatch) -> None:
    from grpo_tui.tui.components.dialogs import PreflightError
    from grpo_tui.tui.launcher import launch_engine

    monkeypatch.chdir(REPO)
    engine = launch_engine("no-such-preset", tmp_path / "run", 3)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, PreflightError) and app.screen.query("#preflight-text"),
                timeout=60,
                what="pre-flight",
            )
            assert "unknown preset 'no-such-preset'" in str(app.screen.query_one("#preflight-text").render())
            await pilot.press("enter")
        assert app.return_code == 2 and "unknown preset" in app.preflight_output

    app = dashboard(tmp_path / "run", engine=engine)
    asyncio.run(go())


def test_memory_panel_shows_gpu_figures_against_the_card(synthetic_run) -> None:
    from textual.widgets import Sparkline

    run = synthetic_run(steps=6, device="cuda:0")

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.memory) == 7, what="memory samples")
            text = str(app.query_one("#memory-text").render())
            for word in ("cuda:0", "79.60 GB", "allocated", "reserved", "peak", "peak rsvd", "nvml used", "engine rss"):
                assert word in text
            assert len(app.query_one("#memory-spark", Sparkline).data) == 7

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_a_long_history_is_drawn_at_the_widget_resolution(synthetic_run, monkeypatch) -> None:
    import grpo_tui.tui.components.curves as curves

    drawn: list[tuple[int, int]] = []  # (points handed to plotext, plot width)
    real = curves.downsample

    def spy(xs, ys, max_points):
        out = real(xs, ys, max_points)
        drawn.append((len(out[0]), max_points))
        return out

    monkeypatch.setattr(curves, "downsample", spy)
    run = synthetic_run(steps=600, groups=2, G=4)

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot, lambda: len(app.state.steps) == 600 and any(n > 20 for n, _ in drawn), what="history drawn"
            )
            width = max(p.size.width for p in app.query(curves.CurvePlot))
            assert all(n <= width for n, _ in drawn) and max(n for n, _ in drawn) > 20

    app = dashboard(run.run.root)
    asyncio.run(go())


# ------------------------------------------------------------------ snapshot


def test_main_screen_snapshot(snap_compare, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_synthetic_run(Path("runs/snapshot"), 12, seed=3, max_steps=12)
    app = dashboard(Path("runs/snapshot"), preset_reason="picked synthetic because this is a test")

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.state.steps and app.rollouts.steps and app.updates, what="history")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_memory_panel_shows_each_rank_of_a_multi_process_run(synthetic_run) -> None:
    run = synthetic_run(steps=2, finished=False, device="cuda:0")
    sample = {
        "device": "cuda:0",
        "allocated_gb": 30.0,
        "reserved_gb": 35.0,
        "peak_gb": 36.0,
        "total_gb": 79.6,
        "nvml_used_gb": 36.5,
        "rss_gb": 3.0,
    }
    run.events.emit("memory", step=2, **sample, ranks=[sample, {**sample, "device": "cuda:1", "reserved_gb": 71.9}])
    run.finish()

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.memory and app.state.memory[-1].get("ranks"), what="ranks")
            await pilot.pause(0.2)
            text = str(app.query_one("#memory-text").render())
            assert "rank 0" in text and "rank 1" in text and "71.90 GB" in text

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_dynamic_sampling_runs_draw_zero_std_before_and_after(synthetic_run) -> None:
    from grpo_tui.rundir.state import ZERO_STD_BEFORE

    run = synthetic_run(steps=0, finished=False)
    for step in (1, 2, 3):
        run.events.emit(
            "step", step=step, max_steps=3, metrics={"reward": 1.0, "frac_reward_zero_std": 0.1, ZERO_STD_BEFORE: 0.6}
        )
    run.finish()

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(app.state.steps) == 3, what="steps")
            await pilot.pause(0.3)
            assert app.state.column(ZERO_STD_BEFORE) == [0.6, 0.6, 0.6]
            assert "zero-std-before-filter" in str(app.query_one("#signal-legend").render())

    app = dashboard(run.run.root)
    asyncio.run(go())


def test_elapsed_ticks_checkpointing_waits_for_the_step_end_and_eta_goes_with_the_engine(
    synthetic_run, monkeypatch
) -> None:
    import re

    import grpo_tui.tui.app as tui_app
    import grpo_tui.tui.run_follower as run_follower
    from grpo_tui.tui.components.status_panel import StatusPanel

    monkeypatch.setattr(tui_app, "TICK", 0.2)
    monkeypatch.setattr(run_follower, "GONE_AFTER", 0.3)
    run = synthetic_run(steps=2, alive=True, finished=False)

    def status() -> str:
        return str(app.query_one(StatusPanel).render())

    def shown_elapsed() -> int:
        return int(re.search(r"%  (\d+)s", status()).group(1))

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.link.alive and app.state.steps == [1, 2], what="live run")
            before = shown_elapsed()
            assert re.search(r"ETA \d+s", status())
            await wait_for(pilot, lambda: shown_elapsed() >= before + 2, timeout=15, what="elapsed ticking")
            assert app.state.steps == [1, 2], "no new step: the clock moved on its own"
            # a checkpoint accepted mid-step: still running until the step ends
            run.events.emit("command", id="c", command="checkpoint", status="accepted")
            run.events.state("checkpointing")
            await wait_for(pilot, lambda: "checkpoint: accepted" in status(), what="accepted checkpoint")
            assert app.state.state == "running" and "checkpointing" not in status()
            run.write_step()
            await wait_for(pilot, lambda: "checkpointing" in status(), what="checkpointing at the step end")
            run.events.emit("checkpoint", step=3, path=str(run.run.checkpoints / "checkpoint-3"), reason="command")
            await wait_for(
                pilot,
                lambda: app.state.state == "running" and "checkpointing" not in status(),
                what="checkpoint written",
            )
            run.run.pid_file.unlink()  # the engine is gone without a run_end
            await wait_for(pilot, lambda: app.link.gone, what="gone")
            await pilot.pause(0.3)
            assert "ETA -" in status()
            stopped = shown_elapsed()
            await pilot.pause(1.5)
            assert shown_elapsed() == stopped, "a dead engine's clock stops"

    app = dashboard(run.run.root)
    asyncio.run(go())
