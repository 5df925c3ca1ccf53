"""The help screen (`?`, F1): every key, what each panel and colour shows, the health rules, the live knobs.

Nothing here is written twice: keys come from the screens' BINDINGS (description and tooltip), panels from
their classes' docstrings and colour records, health rules from rundir.health.RULE_INFO at the thresholds in
force, knobs from rundir.knobs. A new key, rule or knob shows up here by being defined.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

# A section: its title and rows of (left column, right column); the right column wraps under itself.
Row = tuple[Text, Text]
Section = tuple[str, list[Row]]


def first_paragraph(obj: Any, index: int = 0) -> str:
    """A docstring's paragraph (the first by default) on one line."""
    paragraphs = (inspect.getdoc(obj) or "").split("\n\n")
    return " ".join(paragraphs[index].split()) if index < len(paragraphs) else ""


def key_label(b: Binding) -> str:
    if b.key_display:
        return b.key_display
    names = {
        "question_mark": "?",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "comma": ",",
        "full_stop": ".",
        "escape": "esc",
        "enter": "Enter",
    }
    return "/".join(names.get(k.strip(), k.strip()) for k in b.key.split(","))


def keys_section(title: str, bindings: Iterable[Binding]) -> Section:
    rows: list[Row] = []
    seen: set[str] = set()
    for b in bindings:
        if (b.action in seen or not b.show) and not b.tooltip:
            continue  # the second key of a pair ([ ], , .) is in the first one's key_display
        seen.add(b.action)
        right = Text(b.description or b.action, style="bold")
        if b.tooltip:
            right.append(f": {b.tooltip}", style="")
        rows.append((Text(key_label(b), style="bold cyan"), right))
    return title, rows


def panels_section(panels: Iterable[tuple[str, type, Iterable[tuple[str, str]]]]) -> Section:
    rows: list[Row] = []
    for title, cls, legend in panels:
        right = Text(first_paragraph(cls))
        for style, meaning in legend:
            right.append("\n")
            right.append("■ sample", style=style)
            right.append(f"  {meaning}")
        rows.append((Text(title, style="bold"), right))
    return "Panels and colours", rows


def curves_section() -> Section:
    from grpo_tui.tui.components.curves import RewardCurves
    from grpo_tui.tui.components.metric_groups import GROUPS

    rows: list[Row] = [(Text("curves", style="bold"), Text(first_paragraph(RewardCurves)))]
    for group in GROUPS:
        if group.plots is None:
            rows.append((Text(group.name, style="bold"), Text(first_paragraph(RewardCurves, 1))))
            continue
        right = Text()
        for i, spec in enumerate(group.plots):
            right.append(("\n" if i else "") + spec.title + ": ")
            for j, ln in enumerate(spec.lines):
                right.append(("  " if j else "") + "━" + ln.label, style=f"bold color({ln.color})")
        rows.append((Text(group.name, style="bold"), right))
    return "Curve groups (g cycles them, m smooths)", rows


def health_section() -> Section:
    from grpo_tui.rundir.health import DEFAULT, RULE_INFO

    rows: list[Row] = []
    for name, info in RULE_INFO.items():
        meaning, fix = info.describe(DEFAULT)
        right = Text(f"{meaning}.\n")
        right.append("fix: ", style="bold green")
        right.append(fix)
        rows.append((Text(name, style="bold yellow"), right))
    return "Health rules (the engine checks them after every step; the health panel shows those firing)", rows


def knobs_section() -> Section:
    from grpo_tui.rundir.knobs import KNOB_HELP, KNOBS, REWARD_WEIGHTS

    rows: list[Row] = [
        (Text(name, style="bold"), Text(f"{KNOB_HELP[name]} ({where}, {allowed})"))
        for name, (where, allowed, _) in KNOBS.items()
    ]
    rows.append((Text(REWARD_WEIGHTS, style="bold"), Text(f"{KNOB_HELP[REWARD_WEIGHTS]} ([rewards] <name>)")))
    return "Live knobs (k: applied at the next step boundary, marked on the curves)", rows


def help_sections(
    keys: list[tuple[str, Iterable[Binding]]], panels: Iterable[tuple[str, type, Iterable[tuple[str, str]]]]
) -> list[Section]:
    out = [keys_section(title, bindings) for title, bindings in keys]
    return out + [panels_section(panels), curves_section(), health_section(), knobs_section()]


def plain_text(sections: list[Section]) -> str:
    """The help as plain text (for tests and a terminal without the screen)."""
    lines = []
    for title, rows in sections:
        lines.append(title)
        lines += [f"  {left.plain}  {right.plain}" for left, right in rows]
        lines.append("")
    return "\n".join(lines)


def render_sections(sections: list[Section]) -> Group:
    parts = []
    for title, rows in sections:
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(no_wrap=True, min_width=6)
        grid.add_column(ratio=1)
        for left, right in rows:
            grid.add_row(left, right)
        parts += [Text(title, style="bold underline"), grid, Text("")]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    """Help over the whole screen; it scrolls, and its own keys close it (nothing reaches the dashboard)."""

    BINDINGS = [Binding("escape,question_mark,f1", "close", "Close help", tooltip="back to the dashboard")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help-scroll { width: 100%; height: 1fr; border: round $primary; border-title-color: $text;
                              background: $surface; padding: 0 1; }
    """

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections
        self.text = plain_text(sections)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-scroll"):
            # every string here is the code's own (bindings, docstrings, rule and knob records), not run data
            yield Static(render_sections(self.sections), id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        scroll = self.query_one("#help-scroll")
        scroll.border_title = "Help (up/down, PgUp/PgDn scroll; esc closes)"
        scroll.focus()

    def action_close(self) -> None:
        self.dismiss(None)
