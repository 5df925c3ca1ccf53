"""Compare, error analysis, the reward playground, the compact 80x24 layout, and the
dashboard/browser/CLI defects. Pilot and snapshot tests on synthetic runs (the engine's own writers) and
real `grpo-tui` subprocesses for the CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from support.dashboard import dashboard, run_coroutine, wait_for
from support.paths import REPO
from support.processes import engine_env
from support.synthetic import write_synthetic_run

from grpo_tui.engine.rewards.error_kinds import ERROR_KINDS, classify_error, error_counts
from grpo_tui.tui.console.compare import config_differences, load_runs


def _grpo_tui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", *args],
        cwd=REPO,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ error analysis (pure)


@pytest.mark.parametrize(
    "text, extracted, gold, correct, truncated, kind",
    [
        ("<answer>7</answer>", "7", "7", True, False, None),
        ("3 + 4 = 7 so that's it", None, "7", False, False, "right_number_wrong_format"),
        ("I think it is 8", None, "7", False, False, "no_answer_tag"),
        ("<reasoning>3 + 4 is", None, "7", False, True, "cut_off"),
        ("<answer>seven</answer>", "seven", "7", False, False, "not_a_number"),
        ("<answer>Eli has 17</answer>", "Eli has 17", "17", False, False, "right_number_wrong_format"),
        # a one-number sentence reads as its number (engine/rewards/extract.py), so this is a wrong number
        ("<answer>Eli has 18</answer>", "Eli has 18", "17", False, False, "wrong_number"),
        ("<answer>Eli has 18 or 19</answer>", "Eli has 18 or 19", "17", False, False, "not_a_number"),
        ("<answer>18</answer>", "18", "17", False, False, "wrong_number"),
        ("<answer>x+1</answer>", "x+1", "\\sqrt{2}", False, False, "wrong_number"),
    ],
)
def test_wrong_answers_are_sorted_into_kinds(text, extracted, gold, correct, truncated, kind) -> None:
    assert classify_error(text, extracted, gold, correct, truncated) == kind
    assert kind is None or kind in ERROR_KINDS


def test_error_counts_per_step_keep_the_latest_record_of_a_redone_step() -> None:
    def group(step, texts):
        return {
            "step": step,
            "group": 0,
            "gold": "7",
            "completions": [{"text": t, "extracted": None, "correct": False, "truncated": False} for t in texts],
        }

    counts = error_counts([group(1, ["no number"]), group(2, ["so 7"]), group(2, ["nothing", "nope"])])
    assert counts[1] == {"no_answer_tag": 1} and counts[2] == {"no_answer_tag": 2}


def test_run_summary_counts_wrong_answers_by_kind(tmp_path: Path) -> None:
    from grpo_tui.rundir.state import RunState
    from grpo_tui.tui.headless import print_summary

    run = write_synthetic_run(tmp_path / "run", 4, seed=1, max_steps=4)
    out = io.StringIO()
    s = RunState()
    from grpo_tui.rundir.event_reader import read_events

    s.apply(read_events(run.run.events))
    print_summary(Console(file=out, width=200, color_system=None), s, run.run.root, 0)
    line = next(ln for ln in out.getvalue().splitlines() if "wrong answers" in ln)
    # the synthetic run's wrong answers: cut off (truncated, no answer) and wrong numbers, with the last step's
    assert "cut off before the answer" in line and "wrong number" in line and "(step 4:" in line


def browse_synthetic_run(tmp_path: Path, check) -> None:
    """Open the rollout browser on a 3-step synthetic run; await check(pilot, app, screen) once it has loaded."""
    from grpo_tui.tui.browser.app import BrowserApp, RolloutScreen

    run = write_synthetic_run(tmp_path / "run", 3, seed=2, max_steps=3).run.root

    async def go() -> None:
        app = BrowserApp(run, poll_s=0.1)
        async with app.run_test(size=(160, 45)) as pilot:
            s = app.screen
            await wait_for(pilot, lambda: isinstance(s, RolloutScreen) and s.selection is not None, what="load")
            await check(pilot, app, s)

    run_coroutine(go())


def test_browser_filters_by_error_kind(tmp_path: Path) -> None:
    from textual.widgets import Select

    async def check(pilot, app, s) -> None:
        total = s.selection.count
        s.query_one("#f-kind", Select).value = "cut_off"
        await wait_for(pilot, lambda: s.selection.filter.error_kind == "cut_off", what="kind filter")
        r = s.rollouts
        want = int((r.c_live & r.truncated & ~r.correct).sum())  # synthetic: truncated ones have no answer
        assert 0 < s.selection.count == want < total
        assert "cut off before the answer" in str(s.query_one("#status").render())
        s.query_one("#f-kind", Select).value = "wrong_number"
        await wait_for(pilot, lambda: s.selection.filter.error_kind == "wrong_number", what="kind filter")
        assert 0 < s.selection.count < total
        assert all(not r.correct[c] and not r.truncated[c] for c in s.selection.mask.nonzero()[0])

    browse_synthetic_run(tmp_path, check)


# ------------------------------------------------------------------ browser defects


def test_browser_survives_a_bad_regex_and_a_bad_range_and_enter_keeps_focus(tmp_path: Path) -> None:
    from textual.widgets import Input

    async def check(pilot, app, s) -> None:
        await pilot.press("slash", *"/(unclosed/", "enter")
        await wait_for(
            pilot, lambda: "invalid regular expression" in str(s.query_one("#status").render()), what="the regex error"
        )
        assert app.is_running and isinstance(app.focused, Input) and app.focused.id == "f-search"
        await pilot.press("h", "e", "q")  # typed into the search box, not fired as commands
        assert app.is_running and app.focused.value == "/(unclosed/heq" and app.screen is s
        await pilot.press("escape")  # clears the search
        s.query_one("#f-reward", Input).focus()
        await pilot.press(*"abc..2", "enter")
        status = str(s.query_one("#status").render())
        assert "reward range 'abc..2': each end must be a number" in status and "0.5..2" in status
        assert "could not convert" not in status
        await pilot.press("ctrl+a", "ctrl+k", *"3..1", "enter")
        assert "the low end is above the high end" in str(s.query_one("#status").render())

    browse_synthetic_run(tmp_path, check)


# ------------------------------------------------------------------ compare


def _two_runs(tmp_path: Path) -> list[Path]:
    a = write_synthetic_run(tmp_path / "runs" / "a-run", 6, seed=1, max_steps=6).run.root
    b = write_synthetic_run(tmp_path / "runs" / "b-run", 4, seed=2, max_steps=4).run.root
    for path, lr in ((a, 1e-5), (b, 3e-6)):
        (path / "config.json").write_text(
            json.dumps({"preset": {"name": "synthetic"}, "train": {"learning_rate": lr, "beta": 0.0}})
        )
    return [a, b]


def test_compare_no_ui_prints_config_differences_and_curves(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path)
    runs, problems = load_runs([a, b])
    assert problems == [] and [r.steps for r in runs] == [list(range(1, 7)), list(range(1, 5))]
    assert config_differences(runs) == [("train.learning_rate", ["1e-05", "3e-06"])]
    r = _grpo_tui("compare", str(a), str(b), "--no-ui")
    assert r.returncode == 0, r.stderr
    assert "train.learning_rate" in r.stdout and "1e-05" in r.stdout and "3e-06" in r.stdout
    assert "a-run" in r.stdout and "b-run" in r.stdout and "reward" in r.stdout
    bad = _grpo_tui("compare", str(a), str(tmp_path / "nope"), "--no-ui")
    assert bad.returncode == 2 and "nope is not a run directory" in bad.stderr


def test_compare_screen_overlays_runs_and_opens_from_the_browser(tmp_path: Path) -> None:
    from textual.widgets import DataTable

    from grpo_tui.tui.browser.app import BrowserApp, RunListScreen
    from grpo_tui.tui.compare_screen import CompareScreen
    from grpo_tui.tui.components.curves import CurvePlot

    _two_runs(tmp_path)

    async def go() -> None:
        app = BrowserApp(None, tmp_path / "runs", poll_s=0.1)
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(
                pilot, lambda: isinstance(app.screen, RunListScreen) and len(app.screen.runs) == 2, what="the run list"
            )
            await pilot.press("c")  # nothing marked: a hint, no screen
            assert isinstance(app.screen, RunListScreen)
            await pilot.press("space", "space", "c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="the compare screen")
            await pilot.pause(0.3)
            screen = app.screen
            assert [r.name for r in screen.runs] == ["b-run", "a-run"] or [r.name for r in screen.runs] == [
                "a-run",
                "b-run",
            ]
            assert len(screen.query(CurvePlot)) == 4 and all(p.builds >= 1 for p in screen.query(CurvePlot))
            table = screen.query_one("#compare-diff", DataTable)
            assert table.row_count == 1 and "learning_rate" in str(table.get_row_at(0)[0])
            await pilot.press("q")
            assert isinstance(app.screen, RunListScreen)

    run_coroutine(go())


def test_compare_snapshot(snap_compare, tmp_path: Path) -> None:
    from grpo_tui.tui.compare_screen import CompareApp

    runs, _ = load_runs(_two_runs(tmp_path))
    for r in runs:  # a stable title whatever tmp_path is
        r.path = Path(r.path.name)
    assert snap_compare(CompareApp(runs), terminal_size=(120, 36))


# ------------------------------------------------------------------ reward playground


def test_playground_recomputes_every_reward_as_you_type(tmp_path: Path) -> None:
    from textual.widgets import Input, TextArea

    from grpo_tui.tui.playground_screen import PlaygroundScreen

    run = write_synthetic_run(tmp_path / "run", 2, seed=1, max_steps=2).run.root
    (run / "config.json").write_text(
        '{"preset": {"name": "synthetic"}, "prompt": {"format": "reasoning"}, '
        '"rewards": {"correctness": 1.0, "int_answer": 0.5}}'
    )

    async def go() -> None:
        app = dashboard(run)
        async with app.run_test(size=(140, 45)) as pilot:
            await wait_for(pilot, lambda: app.rollouts.steps and app.updates, what="history")
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, PlaygroundScreen) and app.screen.scored, what="score")
            pg = app.screen
            group = app.query_one("GroupTable").current_group  # started on the selected completion
            assert pg.query_one("#pg-gold", Input).value == group["gold"]
            assert [r["name"] for r in pg.result["rewards"]] == ["correctness", "int_answer"]
            pg.query_one("#pg-completion", TextArea).text = "<answer>41</answer>"
            pg.query_one("#pg-gold", Input).value = "41"
            await wait_for(pilot, lambda: pg.result["extracted"] == "41" and pg.result["correct"], what="rescore")
            assert pg.result["scores"] == {"correctness": 2.0, "int_answer": 0.5} and pg.result["total"] == 2.25
            await pilot.press("tab")  # into the gold box, then change it: the verdict follows
            pg.query_one("#pg-gold", Input).value = "42"
            await wait_for(pilot, lambda: not pg.result["correct"], what="rescore")
            assert "✗ incorrect" in str(pg.query_one("#pg-verdict").render())
            await pilot.press("escape")
            assert not isinstance(app.screen, PlaygroundScreen)

    run_coroutine(go())


# ------------------------------------------------------------------ compact layout and snapshots


def _snapshot_run(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_synthetic_run(Path("runs/snapshot"), 12, seed=3, max_steps=12)
    return Path("runs/snapshot")


def _ready(app):
    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.state.steps and app.rollouts.steps and app.updates, what="history")
        await pilot.pause(0.3)

    return ready


@pytest.mark.parametrize("view", ["curves", "rollouts", "status"])
def test_dashboard_80x24_snapshot(snap_compare, tmp_path: Path, monkeypatch, view: str) -> None:
    app = dashboard(_snapshot_run(tmp_path, monkeypatch))
    ready = _ready(app)

    async def go(pilot) -> None:
        await ready(pilot)
        while app.view != view:
            await pilot.press("v")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=go)


def test_dashboard_200x50_snapshot(snap_compare, tmp_path: Path, monkeypatch) -> None:
    app = dashboard(_snapshot_run(tmp_path, monkeypatch), preset_reason="picked synthetic because this is a test")
    assert snap_compare(app, terminal_size=(200, 50), run_before=_ready(app))


def test_browser_80x24_snapshot(snap_compare, tmp_path: Path, monkeypatch) -> None:
    from grpo_tui.tui.browser.app import BrowserApp

    run = _snapshot_run(tmp_path, monkeypatch)
    app = BrowserApp(run, poll_s=0.1)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: getattr(app.screen, "gid", None) is not None, what="the rollouts")
        app.screen.open_seconds = None  # the status line's timing differs from run to run
        app.screen._update_status()
        tables = list(app.screen.query("DataTable"))  # column widths are settled on the next refresh
        await wait_for(pilot, lambda: not any(t._require_update_dimensions for t in tables), what="tables laid out")
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_compact_layout_keeps_quit_and_cycles_views(tmp_path: Path, monkeypatch) -> None:
    run = _snapshot_run(tmp_path, monkeypatch)

    async def go() -> None:
        app = dashboard(run)
        async with app.run_test(size=(80, 24)) as pilot:
            await _ready(app)(pilot)
            assert app.compact and app.screen.has_class("-compact", "-view-curves")
            assert app.query_one("#curves").size.height >= 18  # the curves get the screen
            shown = [b.key for (_, b, enabled, _) in app.screen.active_bindings.values() if b.show and enabled]
            assert shown[:2] == ["q", "v"]  # the footer lists these first: quit never falls off a narrow one
            await pilot.press("v")
            groups = app.query_one("#groups")
            assert app.view == "rollouts" and groups.display and groups.size.height >= 8
            assert app.query_one("#completion").size.height >= 6
            await pilot.resize_terminal(200, 50)
            await pilot.pause(0.2)
            assert not app.compact and app.query_one("#side").size.width >= 70  # grows with the terminal

    run_coroutine(go())


def test_status_column_fits_eta_and_elapsed_at_120x30(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_synthetic_run(Path("runs/long"), 3, seed=3, max_steps=300, finished=False)

    async def go() -> None:
        app = dashboard(Path("runs/long"))
        async with app.run_test(size=(120, 30)) as pilot:
            await _ready(app)(pilot)
            app.state.active  # noqa: B018
            text = str(app.query_one("#status").render())
            step_line = next(ln for ln in text.splitlines() if ln.startswith("Step"))
            speed_line = next(ln for ln in text.splitlines() if ln.startswith("Speed"))
            # elapsed is the fold's (event timestamps: 0.5 s a tick in the synthetic run), shown whole
            assert "…" not in step_line and re.search(r" \d+s$", step_line.rstrip()), step_line
            assert "…" not in speed_line and "ETA" in speed_line

    run_coroutine(go())


def test_smoothing_a_constant_series_gives_that_constant() -> None:
    from grpo_tui.tui.components.curves import settle, smooth

    ys = smooth([24.0] * 60, 0.8)
    assert len(set(ys)) > 1  # the EMA's float noise the plot used to draw as spikes
    assert set(settle(ys)) == {24.0} and settle([1e-7, None, 0.1234567890123456]) == [1e-7, None, 0.123456789012]


# ------------------------------------------------------------------ CLI defects


def test_cli_fails_fast_on_a_bad_preset_or_override_and_suggests_commands(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _grpo_tui("--no-ui", "--preset", "does-not-exist", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "unknown preset 'does-not-exist'" in r.stderr and "starting" not in r.stdout
    assert time.monotonic() - t0 < 30  # no engine started (< 2 s on an idle machine; this one is shared)
    assert not (tmp_path / "r").exists()
    r = _grpo_tui("--no-ui", "--preset", "tiny", "--set", "train.learning_rate=abc", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and r.stderr.startswith("error: --set train.learning_rate=abc:")
    assert "tiny.toml" not in r.stderr
    r = _grpo_tui("brwose")
    assert r.returncode == 2 and "Did you mean browse?" in r.stderr


def test_reusing_a_run_dir_without_resume_is_refused_with_the_engines_words(tmp_path: Path) -> None:
    run = write_synthetic_run(tmp_path / "old", 2, seed=1, max_steps=2).run.root
    before = (run / "events.jsonl").read_bytes()
    r = _grpo_tui("--no-ui", "--preset", "tiny", "--run-dir", str(run))
    assert r.returncode == 2
    assert "already holds a run; pass --resume" in r.stderr and "step 1/2" not in r.stdout  # not replayed
    assert (run / "events.jsonl").read_bytes() == before


def test_an_engine_refused_after_launch_is_not_taken_for_the_old_run(tmp_path: Path) -> None:
    """The race the CLI's quick check can't see: the old run's events.jsonl exists, the engine refuses anyway."""
    from grpo_tui.tui.launcher import launch_engine

    run = write_synthetic_run(tmp_path / "old", 2, seed=1, max_steps=2).run.root
    engine = launch_engine("tiny", run, 1)
    assert not engine.wait_started(timeout=300)
    assert engine.wait() == 2 and "already holds a run" in engine.preflight_output()


def test_preset_name_shows_while_starting(tmp_path: Path) -> None:
    from grpo_tui.tui.components.status_panel import StatusPanel

    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text("")

    async def go() -> None:
        app = dashboard(run, preset="tiny")
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.pause(0.3)
            text = str(app.query_one(StatusPanel).render())
            assert "Preset     tiny" in text and "Preset     ?" not in text

    run_coroutine(go())


def test_quitting_with_stop_says_what_happens(tmp_path: Path, monkeypatch, capsys) -> None:
    from textual.app import App

    from grpo_tui.tui import app as dashboard

    run = write_synthetic_run(tmp_path / "run", 2, seed=1, max_steps=4, finished=False)
    run.run.pid_file.write_text(str(__import__("os").getpid()))  # this test plays the live engine

    async def quit_with_stop(self) -> int:
        async with App.run_test(self, size=(140, 45)) as pilot:
            await wait_for(pilot, lambda: self.state.steps and self.link.alive, what="a live run")
            await pilot.press("q")  # the quit question
            await pilot.press("s")  # stop training
        return self.return_value

    monkeypatch.setattr(dashboard.Dashboard, "run", lambda self: run_coroutine(quit_with_stop(self)))
    assert dashboard.run_dashboard(None, run.run.root, attach=True) == 0
    out = capsys.readouterr().out
    assert "Stop sent" in out and "finishes step 3" in out and f"--resume --run-dir {run.run.root}" in out
    assert [p.name for p in run.run.control.glob("*.json")]  # the stop command was written
