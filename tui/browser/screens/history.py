"""Every group of one prompt across the run (`h` on a group)."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from grpo_tui.rundir.rollouts import Rollouts
from grpo_tui.tui.browser.widgets import GroupSource, group_answers, num_cell, show_group
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.group_table import GroupTable, ellipsize
from grpo_tui.tui.text import safe_text


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
        head.append(
            f"Prompt history: {len(self.gids)} group(s) across "
            f"{len(set(r.g_step[self.gids].tolist()))} step(s)   gold ",
            style="bold",
        )
        head.append(str(r.gold[gid0].as_py()), style="bold green")
        head.append("\n" + ellipsize(r.prompt[gid0].as_py() or "", 400), style="italic")
        self.query_one("#history-prompt", Static).update(safe_text(head))
        self.query_one("#history").border_title = "Groups of this prompt, by step"
        self.query_one("#completions").border_title = "Completions"
        self.query_one("#completion").border_title = "Completion"
        table = self.query_one("#history", DataTable)
        for key, label in (
            ("step", "step"),
            ("group", "grp"),
            ("mean", "mean"),
            ("std", "std"),
            ("ok", "ok"),
            ("answers", "answers"),
        ):
            table.add_column(label, key=key)
        for gid in self.gids:
            gid = int(gid)
            n = int(r.g_n[gid])
            table.add_row(
                Text(str(int(r.g_step[gid])), justify="right"),
                Text(str(int(r.g_group[gid])), justify="right"),
                num_cell(r.g_mean[gid]),
                num_cell(r.g_std[gid], style="bold yellow" if r.g_zero_std[gid] else ""),
                Text(f"{int(r.g_correct[gid])}/{n}", justify="right", style="green" if r.g_correct[gid] else "dim"),
                group_answers(r, gid, 16),
                key=str(gid),
            )
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
        show_group(
            self.query_one(GroupTable),
            self.source,
            steps,
            step,
            [self.rollouts.group_record(g) for g in same_step],
            same_step.index(gid),
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "history":
            self._show(event.cursor_row)

    def on_group_table_completion_selected(self, msg: GroupTable.CompletionSelected) -> None:
        self.query_one(CompletionView).show(msg.step, msg.group, msg.index)
