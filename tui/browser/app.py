"""`grpo-tui browse [RUN_DIR]`: browse, filter, search and export a run's saved rollouts.

Steps (with their summary) on the left, the groups of the selected step below
them; on the right the completions of the selected group (the dashboard's
GroupTable) and the full text of the selected completion (its CompletionView).
The filters above combine; `h` shows every group of the same prompt across the
run, `e` exports the filtered completions to JSONL.

The store is rundir.rollouts (no Textual there). Thread workers read files and
compute selections, then post messages; only the app's thread touches widgets.
A live run is polled: new steps appear as the engine writes them.
"""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from rundir.rollouts import (RolloutFilter, RolloutReader, Rollouts, Selection, StepSummary, parse_range)
from engine.rewards.error_kinds import ERROR_KINDS
from tui.browser import error_filter
from tui.browser.error_filter import BrowserFilter
from tui.browser.runs import RunSummary, list_runs
from tui.browser.widgets import RowList
from tui.components.completion_view import CompletionView
from tui.components.group_table import GroupTable, ellipsize
from tui.text import safe_text, visible

POLL_S = 1.0  # seconds between looks for new rollouts
PROMPT_CHARS = 200


# ------------------------------------------------------------------ messages (posted by workers)


class RolloutsLoaded(Message):
    """A newer snapshot of the run's rollouts (the first one, or one with new groups)."""

    def __init__(self, rollouts: Rollouts, seconds: float, first: bool) -> None:
        super().__init__()
        self.rollouts, self.seconds, self.first = rollouts, seconds, first


class SelectionReady(Message):
    """A filter applied to a snapshot; dropped if either changed meanwhile."""

    def __init__(self, rollouts: Rollouts, selection: Selection, summary: StepSummary) -> None:
        super().__init__()
        self.rollouts, self.selection, self.summary = rollouts, selection, summary


class SelectionFailed(Message):
    """A filter the store could not apply (an invalid regular expression)."""

    def __init__(self, rollouts: Rollouts, filter: RolloutFilter, error: str) -> None:
        super().__init__()
        self.rollouts, self.filter, self.error = rollouts, filter, error


class RunsListed(Message):
    def __init__(self, runs: list[RunSummary]) -> None:
        super().__init__()
        self.runs = runs


class Exported(Message):
    def __init__(self, path: Path, count: int, error: str | None = None) -> None:
        super().__init__()
        self.path, self.count, self.error = path, count, error


def open_snapshot(run_dir: Path) -> tuple[RolloutReader, Rollouts, float]:
    """Read a run's rollouts as they are now: (reader to keep polling with, snapshot, seconds)."""
    t0 = time.perf_counter()
    reader = RolloutReader(run_dir)
    snap = Rollouts(reader.read_new(), reader.report)
    snap.summary()
    return reader, snap, time.perf_counter() - t0


def prefetch(run_dir: Path) -> Future:
    """Start reading in a plain thread now, so the read overlaps Textual's start-up."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(open_snapshot(run_dir))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on it
            fut.set_exception(e)

    threading.Thread(target=run, name="rollouts-prefetch", daemon=True).start()
    return fut


# ------------------------------------------------------------------ formatting


def _f(x: float, fmt: str = "{:.2f}", style: str = "") -> Text:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return Text("-", style="dim", justify="right")
    return Text(fmt.format(x), style=style, justify="right")


def _pct(x: float) -> Text:
    return _f(x, "{:.0%}")


def _one_line(s: str, n: int) -> str:
    return ellipsize(s, n)


class GroupSource:
    """What the dashboard's GroupTable reads (it duck-types RolloutIndex: `steps`, `groups(step)`):
    here, the groups the browser currently shows."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self._groups: dict[int, list[dict[str, Any]]] = {}

    def set(self, steps: list[int], step: int, groups: list[dict[str, Any]]) -> None:
        self.steps = steps
        self._groups = {step: groups}

    def groups(self, step: int) -> list[dict[str, Any]]:
        return self._groups.get(step, [])


def show_group(table: GroupTable, source: GroupSource, steps: list[int], step: int,
               groups: list[dict[str, Any]], pos: int) -> None:
    source.set(steps, step, groups)
    table.follow = False
    table.step = step
    table.group_pos = pos
    table.rollouts_changed({step})


def group_answers(r: Rollouts, gid: int, limit: int = 8) -> Text:
    """The extracted answers of a group's completions, green when correct."""
    s, n = int(r.g_start[gid]), int(r.g_n[gid])
    out = Text()
    for c in range(s, s + min(n, limit)):
        ex = r.extracted[c].as_py()
        if out:
            out.append(" ")
        out.append("·" if ex is None else _one_line(ex, 8), style="green" if r.correct[c] else "dim")
    if n > limit:
        out.append(" …", style="dim")
    return safe_text(out)


# ------------------------------------------------------------------ run picker


class RunListScreen(Screen):
    BINDINGS = [Binding("q", "app.quit", "Quit"), Binding("r", "reload", "Reload"),
                Binding("enter", "open", "Open", show=True), Binding("space", "mark", "Mark"),
                Binding("c", "compare", "Compare marked")]

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = Path(runs_root)
        self.runs: list[RunSummary] = []
        self.marked: set[Path] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(safe_text(f"Runs under {self.runs_root}/ (reading…)"), id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, width in (("date", 16), ("run", 28), ("preset", 12), ("model", 24), ("steps", 9),
                             ("reward", 7), ("state", 9), ("notes", 40)):
            table.add_column(label, key=label, width=width + (2 if label == "date" else 0))
        table.focus()
        self.action_reload()

    @work(thread=True, exclusive=True, group="runs")
    def action_reload(self) -> None:
        self.post_message(RunsListed(list_runs(self.runs_root)))

    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs", DataTable)
        table.clear()
        state_style = {"finished": "green", "running": "bold cyan", "failed": "red", "gone": "yellow",
                       "stopped": "yellow", "paused": "cyan"}
        self.marked &= {r.path for r in self.runs}
        for i, r in enumerate(self.runs):
            steps = "-" if r.step is None else f"{r.step}" + (f"/{r.max_steps}" if r.max_steps else "")
            table.add_row(self._mark(r), safe_text(r.name), safe_text(r.preset), safe_text(r.model),
                          Text(steps, justify="right"),
                          _f(r.reward), safe_text(r.state, style=state_style.get(r.state, "")),
                          safe_text("; ".join(r.notes), style="yellow"), key=str(i))
        title = self.query_one("#runs-title", Static)
        if self.runs:
            title.update(safe_text(f"Runs under {self.runs_root}/: {len(self.runs)} "
                                   "(enter: browse its rollouts · space: mark · c: compare marked runs)"))
        else:
            title.update(safe_text(f"No runs under {self.runs_root}/ (start one with `grpo-tui`, or pass RUN_DIR)"))

    def _mark(self, r: RunSummary) -> Text:
        return Text(("● " if r.path in self.marked else "  ") + r.date, style="bold cyan" if r.path in self.marked else "")

    def action_mark(self) -> None:
        """Mark (or unmark) the run under the cursor for comparison."""
        table = self.query_one("#runs", DataTable)
        if not self.runs or not 0 <= table.cursor_row < len(self.runs):
            return
        r = self.runs[table.cursor_row]
        self.marked ^= {r.path}
        table.update_cell(str(table.cursor_row), "date", self._mark(r))
        table.move_cursor(row=min(table.cursor_row + 1, len(self.runs) - 1))

    def action_compare(self) -> None:
        """Compare the marked runs (at least two) in the compare screen."""
        from tui.compare import CompareScreen
        from tui.console.compare import load_runs

        paths = [r.path for r in self.runs if r.path in self.marked]
        if len(paths) < 2:
            self.notify("mark at least two runs with space, then press c", severity="warning")
            return
        runs, problems = load_runs(paths)
        if problems:
            self.notify("; ".join(problems), severity="error", timeout=10)
            return
        self.app.push_screen(CompareScreen(runs))

    def action_open(self) -> None:
        table = self.query_one("#runs", DataTable)
        if self.runs and 0 <= table.cursor_row < len(self.runs):
            self.app.push_screen(RolloutScreen(self.runs[table.cursor_row].path, can_go_back=True))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()


# ------------------------------------------------------------------ the browser


class FilterBar(Horizontal):
    """Search, correctness, truncation, zero-std, reward and step range; all combine."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search prompts + completions (/re/ = regex)", id="f-search")
        yield Select([("correct", "yes"), ("incorrect", "no")], prompt="any answer", id="f-correct")
        yield Select([("truncated", "yes"), ("not truncated", "no")], prompt="any length", id="f-truncated")
        yield Select([("zero-std groups", "yes"), ("groups with signal", "no")], prompt="any group",
                     id="f-zero-std")
        yield Select([(label, key) for key, label in ERROR_KINDS.items()], prompt="any error", id="f-kind")
        yield Input(placeholder="reward a..b", id="f-reward")
        yield Input(placeholder="steps a..b", id="f-steps")


class RolloutScreen(Screen):
    BINDINGS = [
        Binding("q", "back", "Back/Quit"),  # first, so a narrow footer never drops it
        Binding("slash", "focus_search", "Search", key_display="/"),
        Binding("h", "history", "Prompt history"),
        Binding("e", "export", "Export"),
        Binding("c", "clear_filters", "Clear filters"),
        Binding("f", "follow", "Follow latest"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "escape", "Clear search", show=False),
    ]

    def __init__(self, run_dir: Path, *, can_go_back: bool = False, poll_s: float = POLL_S,
                 prefetched: Future | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self._prefetched = prefetched
        self.can_go_back = can_go_back
        self.poll_s = poll_s
        self.rollouts = Rollouts()
        self.filter = BrowserFilter()
        self.selection: Selection | None = None
        self.summary: StepSummary | None = None
        self.visible_steps: list[int] = []
        self.step: int | None = None
        self.step_gids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.gid: int | None = None
        self.follow = False
        self.loaded = False
        self.open_seconds: float | None = None
        self.source = GroupSource()
        self._stop = threading.Event()
        self._shown_notes: set[str] = set()

    # -------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterBar(id="filters")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield RowList(id="steps")
                yield DataTable(id="groups", cursor_type="row", zebra_stripes=True)
            with Vertical(id="right"):
                yield GroupTable(self.source, id="completions")
                yield CompletionView(id="completion")
                yield Static("Opening…", id="nothing")
        yield Static("Opening…", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.app.sub_title = str(self.run_dir)
        for wid, title in (("steps", "Steps"), ("groups", "Groups"), ("completions", "Completions"),
                           ("completion", "Completion")):
            self.query_one(f"#{wid}").border_title = title
        steps = self.query_one("#steps", RowList)
        groups = self.query_one("#groups", DataTable)
        # Fixed widths for the short columns: auto widths were sometimes settled before the rows arrived,
        # cutting "0.84" to "0.8" and "1/8" to "1/" in a narrow terminal.
        for key, label, width in (("group", "grp", 3), ("mean", "mean", 5), ("std", "std", 5), ("ok", "ok", 5),
                                  ("match", "match", 5), ("answers", "answers", None), ("prompt", "prompt", None)):
            groups.add_column(label, key=key, width=width)
        steps.focus()
        self.poll()

    def on_unmount(self) -> None:
        self._stop.set()

    # -------------------------------------------------------------- workers
    @work(thread=True, exclusive=True, group="poll")
    def poll(self) -> None:
        """Read the run's rollouts, then keep reading what the engine appends. Never touches widgets."""
        worker = get_current_worker()
        fut, self._prefetched = self._prefetched, None
        reader, snap, seconds = fut.result() if fut is not None else open_snapshot(self.run_dir)
        self.post_message(RolloutsLoaded(snap, seconds, True))
        while not worker.is_cancelled and not self._stop.wait(self.poll_s):
            t0 = time.perf_counter()
            chunks = reader.read_new()
            if chunks:
                snap = snap.extend(chunks, reader.report)
                snap.summary()
                self.post_message(RolloutsLoaded(snap, time.perf_counter() - t0, False))

    @work(thread=True, exclusive=True, group="select")
    def compute_selection(self, rollouts: Rollouts, f: BrowserFilter) -> None:
        try:
            sel = error_filter.select(rollouts, f)
        except ValueError as e:  # pyarrow's ArrowInvalid for a /regex/ RE2 can't compile
            self.post_message(SelectionFailed(rollouts, f, str(e)))
            return
        summary = rollouts.summary(sel)
        self.post_message(SelectionReady(rollouts, sel, summary))

    @work(thread=True, group="export")
    def export(self, rollouts: Rollouts, mask: np.ndarray, path: Path) -> None:
        try:
            n = rollouts.export_jsonl(path, mask)
        except OSError as e:
            self.post_message(Exported(path, 0, f"{type(e).__name__}: {e}"))
            return
        self.post_message(Exported(path, n))

    # -------------------------------------------------------------- data arrives
    def on_rollouts_loaded(self, msg: RolloutsLoaded) -> None:
        self.rollouts = msg.rollouts
        if msg.first:
            self.loaded = True
            self.open_seconds = msg.seconds
        for note in msg.rollouts.report.messages():
            if note not in self._shown_notes and "being written" not in note:
                self._shown_notes.add(note)
                self.notify(note, title="Rollouts: read what could be read", severity="warning", timeout=10)
        self.compute_selection(self.rollouts, self.filter)

    def on_selection_ready(self, msg: SelectionReady) -> None:
        if msg.rollouts is not self.rollouts or msg.selection.filter != self.filter:
            return  # stale: a newer snapshot or filter is being computed
        filter_changed = self.selection is None or self.selection.filter != msg.selection.filter
        self.selection, self.summary = msg.selection, msg.summary
        self._fill_steps(rebuild=filter_changed)
        self._update_status()

    def on_selection_failed(self, msg: SelectionFailed) -> None:
        if msg.filter != self.filter:
            return
        detail = msg.error.strip().splitlines()[-1] if msg.error.strip() else "not a valid pattern"
        text = f"search {msg.filter.text}: invalid regular expression ({detail}). Fix it, or drop the slashes " \
               "to search for the text as written."
        self.notify(text, severity="error", timeout=10)
        self.query_one("#status", Static).update(safe_text(text, style="bold red"))

    def on_exported(self, msg: Exported) -> None:
        if msg.error:
            self.notify(f"export failed: {msg.error}", severity="error", timeout=10)
        else:
            self.notify(f"exported {msg.count:,} completions to {msg.path}", title="Export", timeout=8)

    # -------------------------------------------------------------- steps
    STEP_HEADER = f"{'step':>7} {'reward':>7} {'acc':>5} {'0-std':>6} {'len':>5} {'trunc':>6}"

    def _fill_steps(self, rebuild: bool) -> None:
        """Show the steps with a match (all without a filter). RowList draws rows lazily, so this is O(1)."""
        s, sel = self.summary, self.selection
        filtered = not sel.filter.is_empty()
        rows = np.flatnonzero(s.matches > 0) if filtered else np.arange(len(s.step))
        steps = [int(x) for x in s.step[rows]]
        old_last = self.visible_steps[-1] if self.visible_steps else None
        self.visible_steps = steps
        if self.follow and steps:
            target = steps[-1]
        elif self.step in steps:
            target = self.step
        else:
            target = steps[0] if steps else None
        header = Text(self.STEP_HEADER + (f" {'match':>7}" if filtered else ""))
        self.query_one("#steps", RowList).set_rows(
            header, steps, lambda i: self._step_line(s, int(rows[i]), filtered),
            cursor=steps.index(target) if target is not None else 0)
        # the groups shown change with the filter, or when the shown step got more groups
        self._select_step(target, force=rebuild or target == old_last)

    @staticmethod
    def _step_line(s: StepSummary, i: int, filtered: bool) -> Text:
        def num(x: float, fmt: str, width: int, style: str = "") -> None:
            t.append(" ")
            t.append("-".rjust(width) if math.isnan(x) else fmt.format(x).rjust(width), style=style)

        t = Text(f"{int(s.step[i]):>7}")
        num(s.mean_reward[i], "{:.2f}", 7)
        num(s.accuracy[i], "{:.0%}", 5, "green" if s.accuracy[i] >= 0.5 else "")
        num(s.zero_std_frac[i], "{:.0%}", 6, "yellow" if s.zero_std_frac[i] >= 0.5 else "")
        num(s.mean_tokens[i], "{:.0f}", 5)
        num(s.truncated_frac[i], "{:.0%}", 6, "yellow" if s.truncated_frac[i] >= 0.5 else "")
        if filtered and s.matches is not None:
            t.append(f" {int(s.matches[i]):>7,}", style="bold cyan")
        return t

    def on_row_list_highlighted(self, event: RowList.Highlighted) -> None:
        if event.row_list.id == "steps":
            step = int(event.key)
            if step != self.step:
                self.follow = self.follow and step == self.visible_steps[-1]
                self._select_step(step, move_cursor=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "groups" and 0 <= event.cursor_row < len(self.step_gids):
            self._select_group(event.cursor_row)

    # -------------------------------------------------------------- groups of a step
    def _select_step(self, step: int | None, force: bool = False, move_cursor: bool = True) -> None:
        if step == self.step and not force:
            return
        self.step = step
        table = self.query_one("#groups", DataTable)
        r, sel = self.rollouts, self.selection
        pos = table.cursor_row if force else 0
        table.clear()
        if step is None or sel is None:
            self.step_gids = np.zeros(0, dtype=np.int64)
            self.gid = None
            self._show_detail(False)
            return
        gids = r.step_groups(step)
        filtered = not sel.filter.is_empty()
        if filtered:
            gids = gids[sel.group_matches[gids] > 0]
        self.step_gids = gids
        self.query_one("#groups").border_title = f"Groups of step {step}"
        for gid in gids:
            gid = int(gid)
            n = int(r.g_n[gid])
            std = r.g_std[gid]
            table.add_row(Text(str(int(r.g_group[gid])), justify="right"), _f(r.g_mean[gid]),
                          _f(std, style="bold yellow" if r.g_zero_std[gid] else ""),
                          Text(f"{int(r.g_correct[gid])}/{n}", justify="right",
                               style="green" if r.g_correct[gid] else "dim"),
                          Text(f"{int(sel.group_matches[gid])}" if filtered else "", justify="right"),
                          group_answers(r, gid), safe_text(_one_line(r.prompt[gid].as_py() or "", PROMPT_CHARS)),
                          key=str(gid))
        if move_cursor and step in self.visible_steps:
            self.query_one("#steps", RowList).move_to(self.visible_steps.index(step))
        self._show_detail(bool(len(gids)))
        if len(gids):
            pos = max(0, min(pos, len(gids) - 1))
            table.move_cursor(row=pos, animate=False)
            self._select_group(pos, force=True)

    def _show_detail(self, shown: bool) -> None:
        """Completions and completion text, or a line saying why there is none."""
        self.query_one(GroupTable).display = shown
        self.query_one(CompletionView).display = shown
        nothing = self.query_one("#nothing", Static)
        nothing.display = not shown
        if not shown:
            if not self.loaded:
                nothing.update("Opening…")
            elif not self.rollouts.num_groups:
                nothing.update("No rollouts yet: groups appear here as the engine writes them.")
            else:
                nothing.update("No completion matches the filters (c clears them).")

    def _select_group(self, pos: int, force: bool = False) -> None:
        gid = int(self.step_gids[pos])
        if gid == self.gid and not force:
            return
        self.gid = gid
        groups = [self.rollouts.group_record(int(g)) for g in self.step_gids]
        show_group(self.query_one(GroupTable), self.source, self.visible_steps, int(self.step), groups, pos)

    def on_group_table_completion_selected(self, msg: GroupTable.CompletionSelected) -> None:
        self.query_one(CompletionView).show(msg.step, msg.group, msg.index)

    # -------------------------------------------------------------- filters
    def _read_filter(self) -> BrowserFilter | None:
        def sel(wid: str) -> bool | None:
            v = self.query_one(f"#f-{wid}", Select).value
            return None if v is Select.NULL or v not in ("yes", "no") else v == "yes"

        ranges = []
        for wid, kind, what, example in (("reward", float, "reward range", "0.5..2"),
                                         ("steps", int, "step range", "100..200")):
            value = self.query_one(f"#f-{wid}", Input).value
            try:
                ranges.append(parse_range(value, kind))
            except ValueError as e:
                why = ("the low end is above the high end" if "above" in str(e)
                       else "each end must be a " + ("whole number" if kind is int else "number"))
                text = f"{what} {value.strip()!r}: {why}. Write low..high, e.g. {example} (or {example.split('..')[0]}.. or ..{example.split('..')[1]})."
                self.notify(text, severity="error", timeout=8)
                self.query_one("#status", Static).update(safe_text(text, style="bold red"))
                return None
        (rlo, rhi), (slo, shi) = ranges
        kind = self.query_one("#f-kind", Select).value
        return BrowserFilter(error_kind=kind if kind in ERROR_KINDS else None,
                             correct=sel("correct"), truncated=sel("truncated"), zero_std=sel("zero-std"),
                             reward_min=rlo, reward_max=rhi, step_min=slo, step_max=shi,
                             text=self.query_one("#f-search", Input).value.strip())

    def apply_filter(self) -> None:
        f = self._read_filter()
        if f is None or f == self.filter:
            return
        self.filter = f
        self.query_one("#status", Static).update(safe_text(f"filtering: {f.describe()}…", style="italic"))
        self.compute_selection(self.rollouts, f)

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        # Focus stays in the input: letters typed next edit the filter, they don't fire commands (esc leaves).
        self.apply_filter()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        self.apply_filter()

    def action_focus_search(self) -> None:
        self.query_one("#f-search", Input).focus()

    def action_clear_filters(self) -> None:
        for wid in ("search", "reward", "steps"):
            self.query_one(f"#f-{wid}", Input).value = ""
        for wid in ("correct", "truncated", "zero-std", "kind"):
            select = self.query_one(f"#f-{wid}", Select)
            with select.prevent(Select.Changed):
                select.clear()
        self.apply_filter()

    # -------------------------------------------------------------- actions
    def action_follow(self) -> None:
        self.follow = True
        if self.visible_steps:
            self._select_step(self.visible_steps[-1])

    def action_history(self) -> None:
        if self.gid is None:
            self.notify("select a group first", severity="warning")
            return
        self.app.push_screen(HistoryScreen(self.rollouts, self.gid))

    def action_export(self) -> None:
        if self.selection is None or not self.selection.count:
            self.notify("nothing to export: no completion matches", severity="warning")
            return
        self.app.push_screen(ExportDialog(self._default_export_path(), self.selection.count), self._export_to)

    def _default_export_path(self) -> Path:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", self.run_dir.resolve().name).strip("-") or "run"
        path = Path.cwd() / f"{base}-rollouts.jsonl"
        i = 1
        while path.exists():
            path = Path.cwd() / f"{base}-rollouts-{i}.jsonl"
            i += 1
        return path

    def _export_to(self, path: Path | None) -> None:
        if path is None or self.selection is None:
            return
        path = Path(path).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        run = self.run_dir.resolve()
        if path.resolve().parent == run or run in path.resolve().parents:
            self.notify("the run directory belongs to the engine; export somewhere else", severity="error")
            return
        if path.exists():
            self.notify(f"{path} exists; choose another name", severity="error")
            return
        if not path.parent.is_dir():
            self.notify(f"no directory {path.parent}", severity="error")
            return
        self.export(self.rollouts, self.selection.mask, path)

    def action_reload(self) -> None:
        self._stop.set()
        self._stop = threading.Event()
        self.selection = None
        self.visible_steps = []
        self.step = None
        self.gid = None
        self._shown_notes.clear()
        self.query_one("#status", Static).update("Reloading…")
        self.poll()

    def action_escape(self) -> None:
        """In a filled search box: clear it. Anywhere else: back to the steps."""
        if isinstance(self.focused, Input) and self.focused.id == "f-search" and self.focused.value:
            self.focused.value = ""
            self.apply_filter()
            return
        self.query_one("#steps", RowList).focus()

    def action_back(self) -> None:
        if self.can_go_back:
            self._stop.set()
            self.app.pop_screen()
        else:
            self.app.exit(0)

    # -------------------------------------------------------------- status line
    def _update_status(self) -> None:
        r, sel = self.rollouts, self.selection
        t = Text()
        if not r.num_groups:
            t.append("No rollouts yet" + (" (rollouts.jsonl is missing)" if r.report.missing else "") +
                     "; new steps appear as the engine writes them.", style="italic")
        else:
            t.append(f"{len(r.steps):,} steps · {r.num_groups:,} groups · {r.num_completions:,} completions",
                     style="bold")
            if self.open_seconds is not None:
                t.append(f" · opened in {self.open_seconds:.2f} s", style="dim")
            if sel is not None and not sel.filter.is_empty():
                t.append(f"   {sel.count:,} match ", style="bold cyan")
                t.append(f"({sel.filter.describe()}; {sel.seconds * 1000:.0f} ms)", style="cyan")
        notes = r.report.messages()  # the unfinished-line note too: it is only ever popped up for damage
        if notes:
            t.append("   ⚠ " + "; ".join(notes), style="yellow")
        self.query_one("#status", Static).update(safe_text(t))


# ------------------------------------------------------------------ prompt history


class HistoryScreen(Screen):
    """Every group of one prompt across the run's steps: how its answers changed with training."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("q", "app.pop_screen", "Back")]

    def __init__(self, rollouts: Rollouts, gid: int) -> None:
        super().__init__()
        self.rollouts = rollouts
        self.gids = rollouts.history(gid)
        self.start_gid = gid
        self.source = GroupSource()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="history-prompt")
        with Horizontal(id="history-main"):
            yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
            with Vertical(id="history-right"):
                yield GroupTable(self.source, id="completions")
                yield CompletionView(id="completion")
        yield Footer()

    def on_mount(self) -> None:
        r = self.rollouts
        gid0 = self.start_gid
        head = Text()
        head.append(f"Prompt history: {len(self.gids)} group(s) across "
                    f"{len(set(r.g_step[self.gids].tolist()))} step(s)   gold ", style="bold")
        head.append(str(r.gold[gid0].as_py()), style="bold green")
        head.append("\n" + _one_line(r.prompt[gid0].as_py() or "", 400), style="italic")
        self.query_one("#history-prompt", Static).update(safe_text(head))
        self.query_one("#history").border_title = "Groups of this prompt, by step"
        self.query_one("#completions").border_title = "Completions"
        self.query_one("#completion").border_title = "Completion"
        table = self.query_one("#history", DataTable)
        for key, label in (("step", "step"), ("group", "grp"), ("mean", "mean"), ("std", "std"),
                           ("ok", "ok"), ("answers", "answers")):
            table.add_column(label, key=key)
        for gid in self.gids:
            gid = int(gid)
            n = int(r.g_n[gid])
            table.add_row(Text(str(int(r.g_step[gid])), justify="right"),
                          Text(str(int(r.g_group[gid])), justify="right"), _f(r.g_mean[gid]),
                          _f(r.g_std[gid], style="bold yellow" if r.g_zero_std[gid] else ""),
                          Text(f"{int(r.g_correct[gid])}/{n}", justify="right",
                               style="green" if r.g_correct[gid] else "dim"),
                          group_answers(r, gid, 16), key=str(gid))
        where = int(np.flatnonzero(self.gids == gid0)[0]) if (self.gids == gid0).any() else 0
        table.move_cursor(row=where, animate=False)
        table.focus()
        self._show(where)

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.gids):
            return
        gid = int(self.gids[row])
        step = int(self.rollouts.g_step[gid])
        same_step = [int(g) for g in self.gids if int(self.rollouts.g_step[g]) == step]
        steps = sorted({int(s) for s in self.rollouts.g_step[self.gids]})
        show_group(self.query_one(GroupTable), self.source, steps, step,
                   [self.rollouts.group_record(g) for g in same_step], same_step.index(gid))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "history":
            self._show(event.cursor_row)

    def on_group_table_completion_selected(self, msg: GroupTable.CompletionSelected) -> None:
        self.query_one(CompletionView).show(msg.step, msg.group, msg.index)


# ------------------------------------------------------------------ export dialog


class ExportDialog(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path, count: int) -> None:
        super().__init__()
        self.default, self.count = default, count

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Export {self.count:,} filtered completions to JSONL", classes="dialog-title")
            yield Input(str(self.default), id="export-path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Export", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(Input.Submitted, "#export-path")
    def _submitted(self) -> None:
        self._ok()

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        self.dismiss(Path(value) if value else None)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# ------------------------------------------------------------------ app


class BrowserApp(App[int]):
    CSS_PATH = "browser.tcss"
    TITLE = "grpo-tui browse"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (150, "-wide")]

    def __init__(self, run_dir: Path | None, runs_root: Path = Path("runs"), poll_s: float = POLL_S) -> None:
        super().__init__()
        self.run_dir, self.runs_root, self.poll_s = run_dir, Path(runs_root), poll_s
        self._prefetched = prefetch(Path(run_dir)) if run_dir is not None else None

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Notifications quote run data and typed filters: always literal text."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=False)

    def on_mount(self) -> None:
        if self.run_dir is not None:
            self.push_screen(RolloutScreen(self.run_dir, poll_s=self.poll_s, prefetched=self._prefetched))
        else:
            self.push_screen(RunListScreen(self.runs_root))


def run_browser(run_dir: Path | None, runs_root: Path = Path("runs")) -> int:
    """`grpo-tui browse [RUN_DIR]`: 0 on a normal quit, 2 when RUN_DIR is not a run directory."""
    import sys

    if run_dir is not None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            print(f"error: {run_dir} is not a directory", file=sys.stderr)
            return 2
        if not any((run_dir / f).exists() for f in ("rollouts.jsonl", "rollouts", "events.jsonl", "config.json")):
            print(f"error: {run_dir} is not a run directory (no rollouts.jsonl, events.jsonl or config.json)",
                  file=sys.stderr)
            return 2
    app = BrowserApp(run_dir, runs_root)
    result = app.run()
    if app.return_code:  # it crashed (Textual printed the traceback): never report success
        return app.return_code
    return int(result or 0)
