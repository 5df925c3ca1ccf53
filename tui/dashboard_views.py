"""What the dashboard shows: the compact layout's one view at a time, the curve group, the selected step,
group and completion, and the screens opened on that completion (token view, reward playground).

None of it changes the run. Mixed into tui.app.Dashboard.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from rich.text import Text
from textual import events
from textual.app import SystemCommand
from textual.css.query import NoMatches
from textual.widgets import Static

from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.state import RunState, fmt_duration
from grpo_tui.tui.components.completion_view import CompletionView
from grpo_tui.tui.components.curves import RewardCurves
from grpo_tui.tui.components.group_table import GroupTable
from grpo_tui.tui.components.metric_groups import GROUP_NAMES
from grpo_tui.tui.components.status_panel import EngineLink
from grpo_tui.tui.fmt import fixed, is_real
from grpo_tui.tui.text import safe_text

COMPACT_BELOW = (100, 30)  # a terminal narrower or lower than this gets the compact layout: one view at a time
COMPACT_VIEWS = ("curves", "rollouts", "status")


def side_width(width: int) -> int:
    """The side column (status, memory) grows with the terminal, so paths and reasons fit on a wide one."""
    return max(40, min(100, int(width * 0.38)))


class DashboardViews:
    """Layout and view switching, curve groups, step/group/completion selection, token view and playground."""

    rundir: RunDir
    state: RunState
    link: EngineLink
    compact: bool
    view: str  # what the compact layout shows: one of COMPACT_VIEWS

    # ------------------------------------------------------------------ compact layout
    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        compact = width < COMPACT_BELOW[0] or height < COMPACT_BELOW[1]
        side = self.query_one("#side")
        side.styles.width = "1fr" if compact and self.view == "status" else side_width(width)
        if compact != self.compact:
            self.compact = compact
            self.default_screen.set_class(compact, "-compact")
            self._show_view()
            self.refresh_bindings()

    def _show_view(self) -> None:
        for view in COMPACT_VIEWS:
            self.default_screen.set_class(self.compact and self.view == view, f"-view-{view}")
        if self.compact:
            self.query_one("#side").styles.width = "1fr" if self.view == "status" else side_width(self.size.width)
            if self.view == "rollouts":
                self.query_one(GroupTable).table.focus()
        self._refresh_compact_status()

    def action_next_view(self) -> None:
        self.view = COMPACT_VIEWS[(COMPACT_VIEWS.index(self.view) + 1) % len(COMPACT_VIEWS)]
        self._show_view()

    def _state_words(self) -> str:
        """The run's state as the title and the compact line name it."""
        return "engine gone" if self.link.gone else self.state.state.replace("_", " ")

    def _refresh_compact_status(self) -> None:
        """The compact layout's one line: what the status panel says first, and which view this is."""
        if not self.compact:
            return
        m = self.state
        last = m.last_step or {}
        reward = (last.get("metrics") or {}).get("reward")
        line = Text(self._state_words(), style="bold")
        line.append(f"  step {m.step}" + (f"/{m.max_steps}" if m.max_steps else ""))
        eta = m.eta(time.time())
        if eta is not None:
            line.append(f"  ETA {fmt_duration(eta)}")
        if is_real(reward):
            line.append(f"  reward {fixed(reward, 3)}")
        line.append(f"   [{self.view}]  v: next view", style="dim")
        self.query_one("#compact-status", Static).update(safe_text(line, one_line=True))

    # ------------------------------------------------------------------ curves
    def action_next_curves(self, index: int | None = None) -> None:
        curves = self.query_one(RewardCurves)
        name = curves.set_group(curves.group + 1 if index is None else index)
        self.query_one("#curves").border_title = f"Curves · {name} (g: next)"

    def action_toggle_smoothing(self) -> None:
        on = self.query_one(RewardCurves).toggle_smoothing()
        self.notify("smoothing on" if on else "smoothing off", timeout=2)

    # ------------------------------------------------------------------ step, group, completion
    def action_move_step(self, delta: int) -> None:
        self.query_one(GroupTable).move_step(delta)

    def action_move_group(self, delta: int) -> None:
        self.query_one(GroupTable).move_group(delta)

    def action_follow(self) -> None:
        self.query_one(GroupTable).follow_latest()

    def on_group_table_completion_selected(self, msg: GroupTable.CompletionSelected) -> None:
        with suppress(NoMatches):  # a message that arrives while the app shuts down
            self.query_one(CompletionView).show(msg.step, msg.group, msg.index)

    def _show_selected(self, groups: GroupTable) -> None:
        group = groups.current_group
        if group is not None and groups.step is not None:
            self.query_one(CompletionView).show(groups.step, group, groups.table.cursor_row)

    def action_tokens(self) -> None:
        from grpo_tui.tui.components.token_view import TokenScreen, open_token_view

        if not isinstance(self.screen, TokenScreen):
            open_token_view(self, self.query_one(GroupTable))

    def action_playground(self) -> None:
        """The reward playground on the selected completion, with this run's rewards and prompt format."""
        from grpo_tui.tui.playground_screen import PlaygroundScreen

        if isinstance(self.screen, PlaygroundScreen):
            return
        try:
            cfg = json.loads(self.rundir.config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        rewards = cfg.get("rewards") if isinstance(cfg.get("rewards"), dict) else None
        fmt = (cfg.get("prompt") or {}).get("format") or "reasoning"
        source = cfg.get("source")
        base_dir = Path(source).parent if isinstance(source, str) and source else None
        groups = self.query_one(GroupTable)
        group, row = groups.current_group, groups.table.cursor_row
        comps = (group or {}).get("completions") or []
        kw = {}
        if group is not None and 0 <= row < len(comps):
            kw = {"completion": str(comps[row].get("text", "")), "gold": str(group.get("gold", ""))}
        self.push_screen(PlaygroundScreen(rewards, fmt, base_dir, source=self.state.preset if rewards else "", **kw))

    def view_commands(self) -> Iterator[SystemCommand]:
        """The command palette's entries for what is shown."""
        for i, name in enumerate(GROUP_NAMES):
            yield SystemCommand(
                f"Curves: {name}",
                f"Show the {name} curves (g cycles the groups)",
                lambda i=i: self.action_next_curves(i),
            )
        yield SystemCommand(
            "Toggle smoothing", "Smooth the curves (EMA) or show raw values", self.action_toggle_smoothing
        )
        yield SystemCommand("Follow latest step", "Show the newest step's groups", self.action_follow)
        yield SystemCommand(
            "Reward playground",
            "Edit the selected completion and gold answer; every reward of the run recomputes as you type",
            self.action_playground,
        )
