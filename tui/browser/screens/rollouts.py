"""The main screen: steps, groups, completions, filters and search over one run's rollouts."""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Select, Static
from textual.worker import get_current_worker

from grpo_tui.engine.rewards.error_kinds import ERROR_KINDS
from grpo_tui.rundir.rollouts import Rollouts, Selection, StepSummary, parse_range
from grpo_tui.tui.browser import error_filter
from grpo_tui.tui.browser.error_filter import BrowserFilter
from grpo_tui.tui.browser.screens.export import ExportDialog
from grpo_tui.tui.browser.screens.history import HistoryScreen
from grpo_tui.tui.browser.snapshot import open_snapshot
from grpo_tui.tui.browser.widgets import FilterBar, GroupSource, RowList, group_answers, num_cell, show_group
from grpo_tui.tui.browser.worker_messages import Exported, RolloutsLoaded, SelectionFailed, SelectionReady
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.group_table import GroupTable, ellipsize
from grpo_tui.tui.text import safe_text

POLL_S = 1.0  # seconds between looks for new rollouts
PROMPT_CHARS = 200


class RolloutScreen(Screen):
    BINDINGS = [
        Binding("q", "back", "Back/Quit"),  # first, so a narrow footer never drops it
        Binding("slash", "focus_search", "Search", key_display="/"),
        Binding("h", "history", "Prompt history"),
        Binding("e", "export", "Export"),
        Binding("c", "clear_filters", "Clear filters"),
        Binding("f", "follow", "Follow latest"),
        Binding("r", "reload", "Reload"),
        Binding("t", "tokens", "Tokens"),  # after the others: at 80 columns the footer keeps them
        Binding("escape", "escape", "Clear search", show=False),
    ]

    def __init__(
        self, run_dir: Path, *, can_go_back: bool = False, poll_s: float = POLL_S, prefetched: Future | None = None
    ) -> None:
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
        for wid, title in (
            ("steps", "Steps"),
            ("groups", "Groups"),
            ("completions", "Completions"),
            ("completion", "Completion"),
        ):
            self.query_one(f"#{wid}").border_title = title
        steps = self.query_one("#steps", RowList)
        groups = self.query_one("#groups", DataTable)
        # Fixed widths for the short columns: auto widths were sometimes settled before the rows arrived,
        # cutting "0.84" to "0.8" and "1/8" to "1/" in a narrow terminal.
        for key, label, width in (
            ("group", "grp", 3),
            ("mean", "mean", 5),
            ("std", "std", 5),
            ("ok", "ok", 5),
            ("match", "match", 5),
            ("answers", "answers", None),
            ("prompt", "prompt", None),
        ):
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
        text = (
            f"search {msg.filter.text}: invalid regular expression ({detail}). Fix it, or drop the slashes "
            "to search for the text as written."
        )
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
            header,
            steps,
            lambda i: self._step_line(s, int(rows[i]), filtered),
            cursor=steps.index(target) if target is not None else 0,
        )
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
            table.add_row(
                Text(str(int(r.g_group[gid])), justify="right"),
                num_cell(r.g_mean[gid]),
                num_cell(std, style="bold yellow" if r.g_zero_std[gid] else ""),
                Text(f"{int(r.g_correct[gid])}/{n}", justify="right", style="green" if r.g_correct[gid] else "dim"),
                Text(f"{int(sel.group_matches[gid])}" if filtered else "", justify="right"),
                group_answers(r, gid),
                safe_text(ellipsize(r.prompt[gid].as_py() or "", PROMPT_CHARS)),
                key=str(gid),
            )
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
        for wid, kind, what, example in (
            ("reward", float, "reward range", "0.5..2"),
            ("steps", int, "step range", "100..200"),
        ):
            value = self.query_one(f"#f-{wid}", Input).value
            try:
                ranges.append(parse_range(value, kind))
            except ValueError as e:
                why = (
                    "the low end is above the high end"
                    if "above" in str(e)
                    else "each end must be a " + ("whole number" if kind is int else "number")
                )
                lo, hi = example.split("..")
                text = f"{what} {value.strip()!r}: {why}. Write low..high, e.g. {example} (or {lo}.. or ..{hi})."
                self.notify(text, severity="error", timeout=8)
                self.query_one("#status", Static).update(safe_text(text, style="bold red"))
                return None
        (rlo, rhi), (slo, shi) = ranges
        kind = self.query_one("#f-kind", Select).value
        return BrowserFilter(
            error_kind=kind if kind in ERROR_KINDS else None,
            correct=sel("correct"),
            truncated=sel("truncated"),
            zero_std=sel("zero-std"),
            reward_min=rlo,
            reward_max=rhi,
            step_min=slo,
            step_max=shi,
            text=self.query_one("#f-search", Input).value.strip(),
        )

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

    def action_tokens(self) -> None:
        from grpo_tui.tui.components.token_view import open_token_view

        open_token_view(self.app, self.query_one(GroupTable))

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
            t.append(
                "No rollouts yet"
                + (" (rollouts.jsonl is missing)" if r.report.missing else "")
                + "; new steps appear as the engine writes them.",
                style="italic",
            )
        else:
            t.append(
                f"{len(r.steps):,} steps · {r.num_groups:,} groups · {r.num_completions:,} completions", style="bold"
            )
            if self.open_seconds is not None:
                t.append(f" · opened in {self.open_seconds:.2f} s", style="dim")
            if sel is not None and not sel.filter.is_empty():
                t.append(f"   {sel.count:,} match ", style="bold cyan")
                t.append(f"({sel.filter.describe()}; {sel.seconds * 1000:.0f} ms)", style="cyan")
        notes = r.report.messages()  # the unfinished-line note too: it is only ever popped up for damage
        if notes:
            t.append("   ⚠ " + "; ".join(notes), style="yellow")
        self.query_one("#status", Static).update(safe_text(t))
