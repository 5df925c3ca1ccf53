"""Untrusted text shown as text: the one place that makes run data safe to display.

Prompts, gold answers, completions, preset and reward names, paths and error
messages come from run directories, datasets, models and user code. Shown as
markup they could crash a UI (`[/x]` is a MarkupError), become a live action
(`[@click=app.quit]`) or a link (`[link=file:///...]`); raw control characters
(`\\x1b[2J`, `\\x1b]0;title\\x07`) would clear or retitle the terminal. Every UI
(the dashboard, the browser, the headless printer) passes such strings through
`safe_text` (a rich Text: never parsed as markup) or `visible` (for the few
Textual APIs that take a plain str, e.g. notify(..., markup=False)).

Control characters become visible one-for-one (so styled spans keep their
places): C0 codes as their Unicode control pictures (ESC -> ␛, BEL -> ␇,
CR -> ␍), DEL as ␡, and C1 codes, bidi overrides and line/paragraph separators
(which reorder or break lines) as the replacement character �. Newlines and
tabs stay unless `one_line` folds all whitespace into single spaces.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.text import Text

from grpo_tui.rundir.unsafe_text import UNSAFE_CODEPOINTS

# C0 codes as their control pictures, DEL as ␡, the rest as the replacement character
_TABLE: dict[int, str] = {
    c: chr(0x2400 + c) if c < 32 else "\u2421" if c == 0x7F else "\ufffd" for c in UNSAFE_CODEPOINTS
}


def visible(s: Any, *, one_line: bool = False) -> str:
    """str(s) with every control character replaced by a visible stand-in (same length unless one_line)."""
    text = s if isinstance(s, str) else str(s)
    if one_line:
        text = " ".join(text.split())
    return text.translate(_TABLE)


def safe_text(s: Any, style: str = "", *, one_line: bool = False) -> Text:
    """Untrusted s as a rich Text: literal (never markup), control characters made visible.

    A Text passed in keeps its styles and has its characters made visible, so composed
    lines can be cleaned once at the end.
    """
    if isinstance(s, Text):
        out = s.copy()
        plain = visible(out.plain)
        if plain != out.plain:
            out.plain = plain  # same length: the spans stay where they were
        if style:
            out.stylize(style)
        return out
    return Text(visible(s, one_line=one_line), style=style)


def say(text: str, file: Any = None) -> None:
    """Print a line that quotes run text (a path, the engine's detail) with its control characters made visible."""
    print(visible(text), file=file or sys.stdout)


class LiteralNotifications:
    """Mixed into an App before App: every notification is literal text, since it quotes run data (command
    details, preset names, typed filters), with control characters made visible."""

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: str = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        super().notify(  # type: ignore[misc]
            visible(message), title=visible(title), severity=severity, timeout=timeout, markup=False
        )
