"""The rollout browser (`grpo-tui browse`), driven with Textual's Pilot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rich.text import Text
from support.dashboard import wait_for
from support.rollout_store import PROMPTS, group_for, write_run
from textual.widgets import DataTable, Input, Select, Static

from grpo_tui.rundir.rollouts import RolloutFilter, open_rollouts
from grpo_tui.tui.browser.app import BrowserApp, run_browser
from grpo_tui.tui.browser.screens.export import ExportDialog
from grpo_tui.tui.browser.screens.history import HistoryScreen
from grpo_tui.tui.browser.screens.rollouts import RolloutScreen
from grpo_tui.tui.browser.screens.run_list import RunListScreen
from grpo_tui.tui.browser.widgets import RowList
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.group_table import GroupTable

SIZE = (160, 50)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def browser(app) -> RolloutScreen:
    assert isinstance(app.screen, RolloutScreen), app.screen
    return app.screen


async def opened(pilot) -> RolloutScreen:
    await wait_for(
        pilot,
        lambda: isinstance(pilot.app.screen, RolloutScreen) and pilot.app.screen.selection is not None,
        what="the run to open",
    )
    await pilot.pause()
    return pilot.app.screen


async def filtered(pilot, screen: RolloutScreen, **expect) -> None:
    await wait_for(
        pilot,
        lambda: (
            screen.selection is not None and all(getattr(screen.selection.filter, k) == v for k, v in expect.items())
        ),
        what=f"filter {expect}",
    )
    await pilot.pause()


def status(screen) -> str:
    return str(screen.query_one("#status", Static).render())


@pytest.fixture
def run(tmp_path) -> Path:
    write_run(tmp_path / "run", steps=4, groups=3, gens=4, segment_steps=2, close=False)  # step 4... in the tail
    return tmp_path / "run"


async def test_shows_steps_groups_completions_and_text(run):
    app = BrowserApp(run, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        steps = s.query_one("#steps", RowList)
        assert list(steps.keys) == [1, 2, 3, 4] and steps.cursor == 0
        assert "reward" in steps.header.plain and "0-std" in steps.header.plain
        assert "1" in steps.row_text(0).plain
        assert s.query_one("#groups", DataTable).row_count == 3
        assert s.query_one(GroupTable).table.row_count == 4
        view = s.query_one(CompletionView)
        assert "step 1 try 0" in view.text and "extracted" in view.text
        assert "4 steps · 12 groups · 48 completions" in status(s)
        steps.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: s.step == 2, what="step 2")
        await pilot.pause()
        assert "step 2 try 0" in view.text
        s.query_one("#groups", DataTable).focus()
        await pilot.press("down")  # group 1 of step 2
        await wait_for(pilot, lambda: s.gid is not None and int(s.rollouts.g_group[s.gid]) == 1, what="group 1")
        await pilot.pause()
        assert PROMPTS[1] in str(s.query_one("#group-header", Static).render())
        s.query_one(GroupTable).table.focus()
        await pilot.press("down", "down", "down")  # the truncated completion
        await pilot.pause()
        assert "truncated" in view.text and "step 2 try 3" in view.text


async def test_filter_bar_filters_combine(run):
    app = BrowserApp(run, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        s.query_one("#f-correct", Select).value = "no"
        await filtered(pilot, s, correct=False)
        want = open_rollouts(run).select(RolloutFilter(correct=False)).count
        assert s.selection.count == want and f"{want:,} match" in status(s)
        # step 4: every completion right except the truncated one
        assert list(s.query_one("#steps", RowList).keys) == [1, 2, 3, 4]
        s.query_one("#f-truncated", Select).value = "no"
        await filtered(pilot, s, correct=False, truncated=False)
        assert list(s.query_one("#steps", RowList).keys) == [1, 2, 3]
        s.query_one("#f-steps", Input).value = "2..3"
        s.query_one("#f-steps", Input).focus()
        await pilot.press("enter")
        await filtered(pilot, s, step_min=2, step_max=3)
        assert list(s.query_one("#steps", RowList).keys) == [2, 3]
        assert (
            s.selection.count
            == open_rollouts(run).select(RolloutFilter(correct=False, truncated=False, step_min=2, step_max=3)).count
        )
        assert all(not s.rollouts.correct[c] for c in s.selection.mask.nonzero()[0])
        s.query_one("#f-zero-std", Select).value = "yes"  # zero-std groups are all right here
        await filtered(pilot, s, zero_std=True)
        assert s.selection.count == 0 and s.query_one("#steps", RowList).row_count == 0
        assert not s.query_one(GroupTable).display
        assert "No completion matches" in str(s.query_one("#nothing", Static).render())
        s.query_one("#steps", RowList).focus()
        await pilot.press("c")
        await filtered(pilot, s, correct=None, truncated=None, zero_std=None, step_min=None)
        assert s.selection.count == 48 and s.query_one(GroupTable).display


async def test_reward_range_and_bad_range_input(run):
    app = BrowserApp(run, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        box = s.query_one("#f-reward", Input)
        box.value = "2..3"
        box.focus()
        await pilot.press("enter")
        await filtered(pilot, s, reward_min=2.0, reward_max=3.0)
        assert s.selection.count == open_rollouts(run).select(RolloutFilter(reward_min=2, reward_max=3)).count
        box.value = "3..1"
        box.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert s.selection.filter.reward_min == 2.0, "a bad range leaves the filter as it was"
        assert any("reward range" in str(n.message) for n in app._notifications)


async def test_search_prompts_and_completions(run):
    app = BrowserApp(run, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input) and app.focused.id == "f-search"
        await pilot.press(*"APPLES", "enter")
        await filtered(pilot, s, text="APPLES")
        assert s.selection.count == 16  # every completion of group 1 (its prompt), 4 steps
        assert s.query_one("#groups", DataTable).row_count == 1
        # enter keeps focus in the box, so letters typed next don't fire commands
        assert isinstance(app.focused, Input) and app.focused.id == "f-search"
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"try 3", "enter")
        await filtered(pilot, s, text="try 3")
        assert s.selection.count == open_rollouts(run).select(RolloutFilter(text="try 3")).count
        await pilot.press("slash", "escape")  # escape in a filled search box clears it
        await filtered(pilot, s, text="")


async def test_prompt_history(tmp_path):
    d = tmp_path / "run"
    write_run(d, steps=3, groups=4)  # groups 0 and 3 ask the same question
    app = BrowserApp(d, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history")
        h = app.screen
        await pilot.pause()
        table = h.query_one("#history", DataTable)
        assert table.row_count == 6
        steps = [int(str(table.get_row_at(i)[0])) for i in range(6)]
        assert steps == [1, 1, 2, 2, 3, 3]
        assert PROMPTS[0] in str(h.query_one("#history-prompt", Static).render())
        await pilot.press("down", "down")  # step 2, group 0
        await pilot.pause()
        assert "step 2 try 0" in h.query_one(CompletionView).text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutScreen), what="back")


async def test_export_filtered_completions(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = BrowserApp(run, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        s.query_one("#f-correct", Select).value = "yes"
        await filtered(pilot, s, correct=True)
        s.query_one("#steps", RowList).focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="export dialog")
        box = app.screen.query_one("#export-path", Input)
        assert box.value == str(tmp_path / "run-rollouts.jsonl")
        box.value = str(run / "inside.jsonl")
        await pilot.press("enter")
        await pilot.pause()
        assert not (run / "inside.jsonl").exists(), "the run directory belongs to the engine"
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="export dialog")
        app.screen.query_one("#export-path", Input).value = "picked.jsonl"
        await pilot.press("enter")
        out = tmp_path / "picked.jsonl"
        await wait_for(pilot, out.exists, what="the export file")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == s.selection.count > 0 and all(r["correct"] for r in rows)


async def test_live_run_grows_and_follow_tracks_the_latest(tmp_path):
    d = tmp_path / "run"
    w = write_run(d, steps=2, segment_steps=2, close=False)
    app = BrowserApp(d, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        assert list(s.query_one("#steps", RowList).keys) == [1, 2]
        for step in (3, 4):
            for g in range(3):
                w.write_group(step, g, *group_for(step, g))
            w.flush()  # step 4 seals a segment; the browser keeps reading the JSONL
        await wait_for(pilot, lambda: s.visible_steps == [1, 2, 3, 4], what="new steps")
        assert s.step == 1, "without follow the cursor stays put"
        s.query_one("#steps", RowList).focus()
        await pilot.press("f")
        await wait_for(pilot, lambda: s.step == 4, what="follow")
        for g in range(3):
            w.write_group(5, g, *group_for(5, g))
            await pilot.pause(0.15)
            w.flush()
        await wait_for(pilot, lambda: s.step == 5 and len(s.step_gids) == 3, what="the new step's groups")
        await pilot.pause()
        assert "step 5 try 0" in s.query_one(CompletionView).text
        assert "5 steps · 15 groups" in status(s)


def write_events(d: Path, preset: str, model: str, steps: int, reward: float, state: str, t: float) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(
        json.dumps({"preset": {"name": preset}, "model": {"name": model}, "train": {"max_steps": 10}})
    )
    evs = [{"v": 1, "t": t, "type": "run_start", "preset": preset, "model": model, "max_steps": 10}]
    evs += [
        {"v": 1, "t": t + i, "type": "step", "step": i, "max_steps": 10, "metrics": {"reward": reward}}
        for i in range(1, steps + 1)
    ]
    evs += [{"v": 1, "t": t + 99, "type": "state", "state": state}]
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))


async def test_run_list_picks_a_run(tmp_path):
    root = tmp_path / "runs"
    write_events(root / "old", "tiny", "tiny-random", 3, 0.25, "finished", 1_700_000_000)
    write_run(root / "old", steps=3)
    write_events(root / "new", "cpu-demo", "smollm2", 1, 1.5, "running", 1_800_000_000)  # no engine alive
    with open(root / "new" / "events.jsonl", "a") as f:
        f.write('{"v": 9, "t": 1800000200, "type": "state", "state": "paused", "shiny": 1}\n{"v": 1, "t": 18')
    (root / "not-a-run").mkdir(parents=True)
    app = BrowserApp(None, root, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunListScreen) and app.screen.runs, what="runs")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        assert table.row_count == 2
        new, old = (list(map(str, table.get_row_at(i))) for i in range(2))
        assert new[1:5] == ["new", "cpu-demo", "smollm2", "1/10"] and new[6] == "gone"
        assert "newer schema (v9)" in new[7]
        assert old[1:7] == ["old", "tiny", "tiny-random", "3/10", "0.250→0.250", "finished"]
        await pilot.press("down", "enter")
        s = await opened(pilot)
        assert s.run_dir == root / "old" and list(s.query_one("#steps", RowList).keys) == [1, 2, 3]
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunListScreen), what="back to the list")
        await pilot.press("q")
    assert app.return_value in (0, None)


async def test_damaged_run_opens_with_what_can_be_read(tmp_path):
    d = tmp_path / "run"
    write_run(d, steps=2, segment_steps=10, close=False)
    with open(d / "rollouts.jsonl", "ab") as f:
        f.write(
            b"{broken\n"
            + b'{"v": 2, "step": 3, "group": 0, "prompt": "p", "gold": "1", "completions": []}\n'
            + b'{"v": 1, "step": 4, "gro'
        )
    app = BrowserApp(d, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        assert list(s.query_one("#steps", RowList).keys) == [1, 2, 3]
        text = status(s)
        assert "1 damaged line(s)" in text and "newer schema (v2" in text
        assert any("damaged" in str(n.message) for n in app._notifications)


async def test_empty_run_waits_for_rollouts(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    app = BrowserApp(d, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        s = await opened(pilot)
        assert "No rollouts yet" in status(s)
        assert "No rollouts yet" in str(s.query_one("#nothing", Static).render())
        write_run(d, steps=1)
        await wait_for(pilot, lambda: s.visible_steps == [1], what="the first step")


def test_run_browser_refuses_a_non_run_directory(tmp_path, capsys):
    assert run_browser(tmp_path / "nope") == 2
    assert run_browser(tmp_path) == 2
    assert "not a run directory" in capsys.readouterr().err


async def test_row_list_draws_only_what_is_shown():
    from textual.app import App

    calls = []

    class One(App):
        def compose(self):
            yield RowList()

    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        rl = app.query_one(RowList)
        rl.focus()
        t0 = time.perf_counter()
        rl.set_rows(Text("n"), list(range(100_000)), lambda i: calls.append(i) or Text(f"row {i}"))
        assert time.perf_counter() - t0 < 0.25  # O(1): nothing is drawn here
        await pilot.pause()
        assert 0 < len(calls) < 40, "only the visible rows are drawn"
        await pilot.press("end")
        await pilot.pause()
        assert rl.cursor == 99_999 and rl.cursor_key == 99_999 and 99_999 in calls
        await pilot.press("pageup", "up")
        assert rl.cursor < 99_990
        await pilot.press("home")
        assert rl.cursor == 0
        await pilot.click(RowList, offset=(3, 4))  # line 0 is the header
        assert rl.cursor == 3
