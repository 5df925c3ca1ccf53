"""The per-group reward table: the G completions of one prompt, one row each.

It follows the latest step until the user steps back ([ and ]) or to another
group (, and .); f goes back to following. The table only ever holds one
group (G rows), so rebuilding it per step is cheap.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from grpo_tui.rundir.rollouts import RolloutIndex
from grpo_tui.tui.fmt import fixed_cell
from grpo_tui.tui.text import safe_text


def short_names(names: list[str]) -> dict[str, str]:
    """Narrow column headers: the first word of a snake_case name (int_answer -> int), else 8 chars."""
    out = {}
    for name in names:
        first = name.split("_")[0]
        short = first if "_" in name and len(first) >= 3 else name[:8]
        out[name] = short
    shorts = list(out.values())
    return {n: (s if shorts.count(s) == 1 else n[:8]) for n, s in out.items()}


ANSWER_CHARS = 16  # wide enough for "Eli has 17.50"; a longer answer ends in "…" so a cut one is visible


def ellipsize(s: str, n: int) -> str:
    """s on one line, at most n characters, ending in "…" when cut."""
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def fit_prompt(prompt: str, room: int) -> str:
    """The prompt in `room` characters (0: unknown, as is). A word problem asks its question at the end, so a
    long one keeps its start and its end and loses the middle."""
    if room <= 0 or len(prompt) <= room:
        return prompt
    head = max(0, room // 3)
    return prompt[:head] + "…" + prompt[len(prompt) - (room - head - 1) :]


# (style, meaning) of the table's colours, for the help screen
LEGEND = (
    ("bold green", "✓ correct answer; the gold answer; a positive advantage"),
    ("red", "✗ wrong answer; a negative advantage"),
    ("yellow", "an answer that is not the gold; a completion cut at max_completion_length (cut)"),
    ("bold black on yellow", "all totals equal: the group teaches nothing (zero std)"),
)


class GroupTable(Vertical):
    """One group (the G completions of one prompt) of the step shown: step, group, prompt and gold on top, then a
    row per completion: total reward, advantage, correct, extracted answer, tokens, cut, and each reward."""

    class CompletionSelected(Message):
        def __init__(self, step: int, group: dict[str, Any], index: int) -> None:
            super().__init__()
            self.step, self.group, self.index = step, group, index

    def __init__(self, rollouts: RolloutIndex, **kw: Any) -> None:
        super().__init__(**kw)
        self.rollouts = rollouts
        self.follow = True
        self.step: int | None = None
        self.max_steps: int | None = None  # the run's, as the status panel shows it (set by the app)
        self.group_pos = 0
        self._groups: list[dict[str, Any]] = []
        self._columns: tuple[str, ...] = ()

    def compose(self):
        yield Static("Waiting for the first step's rollouts…", id="group-header")
        table = DataTable(id="group-data", cursor_type="row", zebra_stripes=True)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one("#group-data", DataTable)

    @property
    def current_group(self) -> dict[str, Any] | None:
        return self._groups[self.group_pos] if 0 <= self.group_pos < len(self._groups) else None

    # ---------------------------------------------------------- navigation
    def rollouts_changed(self, steps: set[int]) -> None:
        if not self.rollouts.steps:
            return
        if self.follow:
            self._show(self.rollouts.steps[-1])
        elif self.step in steps:
            self._show(self.step)

    def move_step(self, delta: int) -> None:
        steps = self.rollouts.steps
        if not steps:
            return
        try:
            i = steps.index(self.step) if self.step is not None else len(steps) - 1
        except ValueError:
            i = len(steps) - 1
        i = max(0, min(len(steps) - 1, i + delta))
        self.follow = i == len(steps) - 1
        self._show(steps[i])

    def move_group(self, delta: int) -> None:
        if not self._groups:
            return
        self.group_pos = (self.group_pos + delta) % len(self._groups)
        self._show(self.step, keep_row=True)

    def follow_latest(self) -> None:
        self.follow = True
        if self.rollouts.steps:
            self._show(self.rollouts.steps[-1])

    # ------------------------------------------------------------- drawing
    def _show(self, step: int | None, keep_row: bool = True) -> None:
        if step is None:
            return
        self.step = step
        self._groups = self.rollouts.groups(step)
        if not self._groups:
            return
        self.group_pos = min(self.group_pos, len(self._groups) - 1)
        group = self._groups[self.group_pos]
        self._draw_header(group)
        self._fill(group, keep_row)

    def _draw_header(self, group: dict[str, Any]) -> None:
        comps = group.get("completions") or []
        totals = [c.get("total") for c in comps if isinstance(c.get("total"), (int, float))]
        h = Text()
        h.append(f"Step {self.step}", style="bold")
        total = self.max_steps or (self.rollouts.steps[-1] if self.rollouts.steps else None)  # the run's, else the last
        h.append(f"/{total}" if total else "")
        # Group numbers are the records' own (from 0, as in rollouts.jsonl, exports and the browser's grp column).
        h.append(f"   group {group.get('group', '?')}", style="bold")
        h.append(f" ({self.group_pos + 1} of {len(self._groups)})")
        h.append("   gold ", style="dim")
        h.append(" ".join(str(group.get("gold", "?")).split()), style="bold green")
        correct = sum(1 for c in comps if c.get("correct"))
        h.append(f"   correct {correct}/{len(comps)}")
        if len(totals) > 1 and max(totals) - min(totals) < 1e-9:
            h.append("   all totals equal: no signal", style="bold black on yellow")
        h.append(
            "  following latest" if self.follow else "  (f: follow latest)", style="green" if self.follow else "yellow"
        )
        header = self.query_one("#group-header", Static)
        width = header.content_size.width
        if width and h.cell_len > width:  # one line, least important last, so the prompt keeps its lines
            h.truncate(width, overflow="ellipsis")
        h.append("\n")
        room = (header.size.height - 1) * width * 9 // 10  # word wrap wastes some
        h.append(fit_prompt(" ".join(str(group.get("prompt", "")).split()), room), style="italic")
        header.update(safe_text(h), layout=False)  # fixed height (dashboard.tcss)

    def _fill(self, group: dict[str, Any], keep_row: bool) -> None:
        table = self.table
        comps = group.get("completions") or []
        names: list[str] = []
        for c in comps:
            for k in c.get("rewards") or {}:
                if k not in names:
                    names.append(k)
        # The columns that matter most first, so a narrow terminal still shows them.
        columns = ("#", "total", "adv", "ok", "answer", "tok", "cut", *names)
        row = table.cursor_row if keep_row else 0
        if columns != self._columns:
            table.clear(columns=True)
            short = short_names(names)
            for col in columns:
                table.add_column(safe_text(short.get(col, col), one_line=True), key=col)
            self._columns = columns
        else:
            table.clear()
        for i, c in enumerate(comps):
            rewards = c.get("rewards") or {}
            extracted = c.get("extracted")
            ok = Text("✓", style="bold green") if c.get("correct") else Text("✗", style="red")
            answer = (
                Text("—", style="dim")
                if extracted is None
                else safe_text(
                    ellipsize(str(extracted), ANSWER_CHARS),
                    one_line=True,
                    style="green" if c.get("correct") else "yellow",
                )
            )
            table.add_row(
                Text(str(i + 1), justify="right"),
                fixed_cell(c.get("total"), justify="right"),
                fixed_cell(c.get("advantage"), signed=True, justify="right"),
                ok,
                answer,
                Text(str(c.get("tokens", "?")), justify="right"),
                Text("cut", style="yellow") if c.get("truncated") else Text(""),
                *(fixed_cell(rewards.get(n), justify="right") for n in names),
                key=str(i),
            )
        if comps:
            table.move_cursor(row=max(0, min(row, len(comps) - 1)), animate=False)
            self.post_message(self.CompletionSelected(self.step, group, table.cursor_row))

    def on_resize(self) -> None:
        # the prompt is fitted to the header's size, known only after layout (and changed by a resize)
        group = self.current_group
        if group is not None:
            self.call_after_refresh(self._draw_header, group)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        group = self.current_group
        if group is not None and self.step is not None:
            self.post_message(self.CompletionSelected(self.step, group, event.cursor_row))
