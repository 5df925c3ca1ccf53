"""The browser's widgets and cell formatting.

RowList: a cursor list of many rows that renders only the rows on screen.

DataTable measures every cell of every row it is given (about 0.3 ms a row
here), so refilling it with a long run's 2,000+ steps after each filter costs
most of a second. RowList asks for a row's Text only when that row is drawn
(Textual's line API), so refilling it costs nothing however many rows there are.

FilterBar: the filter inputs above the steps. GroupSource/show_group feed the
dashboard's GroupTable with the browser's groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Select

from grpo_tui.engine.rewards.error_kinds import ERROR_KINDS
from grpo_tui.rundir.rollouts import Rollouts
from grpo_tui.tui.components.group_table import GroupTable, ellipsize
from grpo_tui.tui.text import safe_text


class RowList(ScrollView, can_focus=True):
    """A header line over rows drawn on demand by `render_row(index) -> Text`; one row has the cursor."""

    COMPONENT_CLASSES = {"row-list--header", "row-list--cursor", "row-list--cursor-blurred", "row-list--odd"}
    DEFAULT_CSS = """
    RowList { height: 1fr; }
    RowList > .row-list--header { text-style: bold; color: $primary; }
    RowList > .row-list--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                   text-style: bold; }
    RowList > .row-list--cursor-blurred { background: $block-cursor-blurred-background; }
    RowList > .row-list--odd { background: $surface-lighten-1 30%; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=False)

    class Highlighted(Message):
        def __init__(self, row_list: RowList, index: int, key: Hashable) -> None:
            super().__init__()
            self.row_list, self.index, self.key = row_list, index, key

        @property
        def control(self) -> RowList:
            return self.row_list

    class Selected(Highlighted):
        pass

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.header = Text()
        self.keys: Sequence[Hashable] = ()
        self._render_row: Callable[[int], Text] = lambda i: Text()
        self._cache: dict[int, Text] = {}
        self._line_width = 0

    # ------------------------------------------------------------ data
    def set_rows(
        self,
        header: Text,
        keys: Sequence[Hashable],
        render_row: Callable[[int], Text],
        cursor: int = 0,
        line_width: int = 0,
    ) -> None:
        """Replace every row. `render_row(i)` is called for rows as they are drawn (and cached)."""
        self.header, self.keys, self._render_row = header, keys, render_row
        self._cache.clear()
        self._line_width = max(line_width, header.cell_len)
        self.virtual_size = Size(self._line_width, len(keys) + 1)
        self.set_reactive(RowList.cursor, max(0, min(cursor, len(keys) - 1)))
        self._scroll_cursor_into_view()
        self.refresh()
        if keys:
            self.post_message(self.Highlighted(self, self.cursor, self.keys[self.cursor]))

    @property
    def row_count(self) -> int:
        return len(self.keys)

    @property
    def cursor_key(self) -> Hashable | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def row_text(self, index: int) -> Text:
        text = self._cache.get(index)
        if text is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            text = self._cache[index] = self._render_row(index)
        return text

    def move_to(self, index: int) -> None:
        if self.keys:
            self.cursor = max(0, min(index, len(self.keys) - 1))

    # ------------------------------------------------------------ cursor
    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        if 0 <= new < len(self.keys):
            self.post_message(self.Highlighted(self, new, self.keys[new]))

    def _scroll_cursor_into_view(self) -> None:
        if not self.keys:
            return
        # screen line y >= 1 shows row scroll_y + y - 1 (line 0 is the header, drawn fixed),
        # so rows scroll_y .. scroll_y + height - 2 are visible
        rows_shown = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            top = self.cursor
        elif self.cursor > top + rows_shown - 1:
            top = self.cursor - rows_shown + 1
        if top != int(self.scroll_offset.y):
            self.scroll_to(y=top, animate=False, force=True, immediate=True)

    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, index: int) -> None:
        self.move_to(index if index >= 0 else len(self.keys) - 1)

    def action_select(self) -> None:
        if self.keys:
            self.post_message(self.Selected(self, self.cursor, self.keys[self.cursor]))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= index < len(self.keys):
            if index == self.cursor and event.chain >= 2:
                self.action_select()
            self.cursor = index

    # ------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            text, style = self.header, self.get_component_rich_style("row-list--header")
        else:
            index = scroll_y + y - 1
            if index >= len(self.keys):
                return Strip.blank(width, self.rich_style)
            text = self.row_text(index)
            if index == self.cursor:
                style = self.get_component_rich_style(
                    "row-list--cursor" if self.has_focus else "row-list--cursor-blurred"
                )
            elif index % 2:
                style = self.get_component_rich_style("row-list--odd")
            else:
                style = Style()
        base = self.rich_style + style
        segments = [
            Segment(s.text, base + s.style if s.style else base)
            for s in text.render(self.app.console)
            if s.text != "\n"
        ]
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, base)


# ------------------------------------------------------------------ formatting and groups


def num_cell(x: float, fmt: str = "{:.2f}", style: str = "") -> Text:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return Text("-", style="dim", justify="right")
    return Text(fmt.format(x), style=style, justify="right")


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


def show_group(
    table: GroupTable, source: GroupSource, steps: list[int], step: int, groups: list[dict[str, Any]], pos: int
) -> None:
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
        out.append("·" if ex is None else ellipsize(ex, 8), style="green" if r.correct[c] else "dim")
    if n > limit:
        out.append(" …", style="dim")
    return safe_text(out)


class FilterBar(Horizontal):
    """Search, correctness, truncation, zero-std, kind of wrong answer, reward and step range; all combine."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search prompts + completions (/re/ = regex)", id="f-search")
        yield Select([("correct", "yes"), ("incorrect", "no")], prompt="any answer", id="f-correct")
        yield Select([("truncated", "yes"), ("not truncated", "no")], prompt="any length", id="f-truncated")
        yield Select([("zero-std groups", "yes"), ("groups with signal", "no")], prompt="any group", id="f-zero-std")
        yield Select([(label, key) for key, label in ERROR_KINDS.items()], prompt="any error", id="f-kind")
        yield Input(placeholder="reward a..b", id="f-reward")
        yield Input(placeholder="steps a..b", id="f-steps")
