"""Why the engine stopped: the error event's message and traceback, and the tail of engine.log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from grpo_tui.tui.text import safe_text


def tail_lines(path: Path, n: int = 30, max_bytes: int = 64 << 10) -> str:
    """The last n lines of a (possibly large) text file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


def last_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


class ErrorPanel(VerticalScroll):
    """The engine's error and the end of engine.log: hidden until the engine fails or dies (red border)."""

    def compose(self):
        yield Static("", id="error-text")

    def show(self, title: str, errors: list[dict[str, Any]], log_tail: str) -> None:
        self.border_title = title  # stays visible while the text below scrolls
        t = Text()
        for ev in errors[-1:]:
            t.append(str(ev.get("message", "")) + "\n", style="bold")
            tb = str(ev.get("traceback") or "")
            if tb.strip():
                t.append(last_lines(tb, 25) + "\n", style="")
        if log_tail.strip():
            t.append("\nengine.log (last lines):\n", style="dim bold")
            t.append(log_tail + "\n", style="dim")
        self.query_one("#error-text", Static).update(safe_text(t))
        self.add_class("-visible")
        self.scroll_end(animate=False)
