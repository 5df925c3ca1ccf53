"""Untrusted text stays text: a run whose prompts, golds, completions, preset and reward names,
state details and errors hold markup and terminal escapes, through the dashboard and the browser (Pilot)
and the headless printer (a rich Console capture). Nothing crashes, nothing becomes an action or a link,
escapes are shown as visible characters, and the printer's own [paused]/[failed] labels survive."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text
from support.dashboard import run_coroutine, wait_for

from grpo_tui.rundir.control import ensure_control_dir
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.names import SCHEMA_VERSION
from grpo_tui.rundir.rollouts import RolloutWriter
from grpo_tui.tui.text import safe_text, visible

CORPUS = [
    "[/...]",
    "[@click=app.quit]quit[/]",
    "[link=file:///etc/passwd]x[/link]",
    "\x1b[2J",
    "\x1b]0;title\x07",
    "[bold]",
    "ünïcødé ✓ 数学 🙂",
]
HOSTILE = " ".join(CORPUS)
SIZE = (140, 45)


def _append_raw(path: Path, type: str, **fields: object) -> None:
    """An event line as any process could write it, past EventWriter's checks."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"v": SCHEMA_VERSION, "t": time.time(), "type": type, **fields}) + "\n")


def write_hostile_run(root: Path, *, failed: bool = True) -> Path:
    run = RunDir(root)
    root.mkdir(parents=True)
    ensure_control_dir(run.control)
    ev, ro = EventWriter(run.events), RolloutWriter(run.rollouts)
    names = ["correctness", "[/x]", "\x1b[31mred"]
    ev.emit(
        "run_start",
        run_dir=str(root),
        preset=HOSTILE,
        preset_path="x.toml",
        model="[@click=app.quit]m",
        pid=0,
        host="h",
        resumed=False,
        resume_from=None,
        max_steps=3,
        num_generations=2,
        reward_names=names,
        reward_weights={n: 1.0 for n in names},
        device="\x1b]0;dev\x07",
        versions={},
    )
    ev.emit(
        "dataset",
        source="[/d]",
        origin="[link=file:///etc/passwd]o[/link]",
        rows_total=2,
        rows_used=2,
        rows_skipped=0,
        skipped={},
    )
    ev.state("running", step=0, detail="[/detail]")
    for step in (1, 2):
        comps = [
            {
                "text": f"<reasoning>{HOSTILE}</reasoning><answer>{c}</answer>",
                "extracted": c,
                "correct": i == 0,
                "rewards": {n: float(i) for n in names},
                "total": float(i),
                "advantage": 0.0,
                "tokens": 5,
                "truncated": False,
            }
            for i, c in enumerate(["[@click=app.quit]", "\x1b[2J7"])
        ]
        ro.write_group(step, 0, HOSTILE, "[link=file:///etc/passwd]7[/link]", comps)
        ro.flush()
        ev.emit(
            "step",
            step=step,
            max_steps=3,
            metrics={"reward": 0.5, **{f"rewards/{n}/mean": 0.5 for n in names}},
            step_time_s=1.0,
            elapsed_s=float(step),
            eta_s=1.0,
            correct_frac=0.5,
        )
    # the writer only writes known commands; a run directory's log is untrusted all the same
    _append_raw(run.events, "command", id="c1", command="[/cmd]", status="rejected", detail="\x1b[2J[/why]")
    ev.emit("reward_failure", step=2, reward="[/r]", count=1, kind="[bold]", example="\x1b]0;t\x07")
    ev.state("paused", step=2, detail="[/paused detail]")
    if failed:
        ev.emit("error", message="boom [/oops] \x1b[2J", traceback="Traceback [@click=app.quit]\n\x1b]0;x\x07")
        ev.state("failed", step=2, detail="[/failed detail]")
        ev.emit("run_end", status="failed", step=2, exit_code=1, elapsed_s=2.0)
    ev.close()
    ro.close()
    return root


def test_safe_text_is_literal_and_shows_control_characters() -> None:
    t = safe_text(HOSTILE)
    assert isinstance(t, Text) and not t.spans and "[@click=app.quit]" in t.plain
    assert "\x1b" not in t.plain and "\x07" not in t.plain and "␛[2J" in t.plain and "␛]0;title␇" in t.plain
    assert "ünïcødé ✓ 数学 🙂" in t.plain
    styled = Text("ok ")
    styled.append("\x1b[1m", style="bold")
    out = safe_text(styled)
    assert out.plain == "ok ␛[1m" and out.spans[0].start == 3  # same length: styles stay put
    assert visible("a\nb\tc\r\x9b\u202e") == "a\nb\tc␍\ufffd\ufffd" and visible(" a \n b ", one_line=True) == "a b"


def test_headless_printer_keeps_hostile_text_literal(tmp_path: Path) -> None:
    from grpo_tui.tui.headless import follow

    run = write_hostile_run(tmp_path / "run")
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    code = follow(run, None, console=console, poll_s=0.01)
    text = out.getvalue()
    assert code == 1
    assert "\x1b" not in text and "\x07" not in text
    assert "[paused] [/paused detail]" in text and "[failed] at step 2: [/failed detail]" in text  # labels kept
    assert "error: boom [/oops] ␛[2J" in text and "cause: boom [/oops] ␛[2J" in text  # the error event's cause
    assert "[/cmd] rejected" in text and "␛[2J[/why]" in text
    assert "Traceback" not in text and "traceback: in " in text  # the cause, not a traceback tail


def test_dashboard_shows_hostile_text_literally(tmp_path: Path) -> None:
    from grpo_tui.tui.app import Dashboard
    from grpo_tui.tui.components.completion_view import CompletionView
    from grpo_tui.tui.components.group_table import GroupTable
    from grpo_tui.tui.components.status_panel import StatusPanel

    run = write_hostile_run(tmp_path / "run")

    async def go() -> None:
        app = Dashboard(run, poll_interval=0.05, idle_interval=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.steps == [1, 2] and app.rollouts.steps, what="history")
            await pilot.pause(0.3)
            view = app.query_one(CompletionView)
            assert "[@click=app.quit]" in view.text and "␛[2J" in view.text and "\x1b" not in view.text
            status = str(app.query_one(StatusPanel).render())
            # (rich drops BEL, CR, BS, VT and FF where a panel builds Text itself: gone is as safe as visible)
            assert "[/...] [@click=app.quit]quit[/]" in status and "␛[2J ␛]0;title" in status, status
            assert "\x07" not in status and "\x1b" not in status
            await pilot.press("down")  # the second completion: its answer is an escape sequence
            assert "␛[2J7" in view.text
            await pilot.click(GroupTable)  # clicking text that held [@click=app.quit] quits nothing
            await pilot.pause(0.2)
            assert app.is_running and app.return_code is None
            await pilot.press("q")  # a failed run: quitting reports it
        assert app.return_code == 1

    run_coroutine(go())


def test_browser_shows_hostile_text_literally(tmp_path: Path) -> None:
    from grpo_tui.tui.browser.app import BrowserApp, RolloutScreen, RunListScreen
    from grpo_tui.tui.components.completion_view import CompletionView

    root = tmp_path / "runs"
    write_hostile_run(root / "\x1b[2J[@click=app.quit]run[bold]")

    async def go() -> None:
        app = BrowserApp(None, root, poll_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunListScreen) and app.screen.runs, what="runs")
            await pilot.pause(0.2)
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: isinstance(app.screen, RolloutScreen) and app.screen.gid is not None, what="the rollouts"
            )
            await pilot.pause(0.3)
            view = app.screen.query_one(CompletionView)
            assert "[link=file:///etc/passwd]7[/link]" in view.text and "\x1b" not in view.text
            await pilot.click("#groups")
            await pilot.pause(0.2)
            assert app.is_running
            await pilot.press("q", "q")
        assert app.return_code == 0

    run_coroutine(go())


def test_a_crashed_ui_does_not_exit_0(tmp_path: Path, monkeypatch) -> None:
    """If a UI dies anyway (a bug), the command's exit code says so."""
    from grpo_tui.tui import app as dashboard
    from grpo_tui.tui.components.status_panel import StatusPanel

    run = write_hostile_run(tmp_path / "run", failed=False)

    def broken(self, *a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(StatusPanel, "show", broken)
    monkeypatch.setattr(dashboard.Dashboard, "run", lambda self: dashboard.App.run(self, headless=True))
    assert dashboard.run_dashboard(None, run, attach=True) == 1


def test_cli_front_ends_show_run_paths_and_answers_as_text(tmp_path: Path) -> None:
    """`stop`/`set`, `compare` and `export` name run directories in their messages: a name holding escapes is
    printed with visible stand-ins, so the terminal is never retitled, cleared or handed a link."""
    import os
    import subprocess
    import sys

    from support.paths import REPO

    run = tmp_path / "r\x1b]0;pwned\x07\x1b[2J[link=file:///etc/shadow]x[/link]"
    write_hostile_run(run)
    bad = tmp_path / "b\x1b]0;pwned\x07"  # a log compare cannot read: the problem names it
    bad.mkdir()
    (bad / "events.jsonl").write_bytes(b"\x00 not events\n")
    for args in (
        ["stop", str(run)],
        ["set", str(run), "learning_rate=1e-5"],
        ["compare", "--no-ui", str(run), str(bad)],
        ["export", str(run), "--out", str(tmp_path / "out")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "grpo_tui.tui.cli", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, TERM="xterm-256color"),
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, (args, out)
        assert "\x1b" not in out and "\x07" not in out, (args, out)
        assert "␛]0;pwned␇" in out, (args, out)
