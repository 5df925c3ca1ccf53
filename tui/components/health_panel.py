"""Health warnings of the run (the engine's `health` events, rundir/health.py): one line each, with the fix.

Hidden while every rule is quiet. The text comes from the run directory, so it
is drawn as rich Text, never as markup.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

MAX_LINES = 4  # more warnings than this: the rest are counted (the run summary lists them all)


def warnings_text(health: dict[str, dict[str, Any]], width: int | None = None) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    items = sorted(health.values(), key=lambda ev: ev.get("step") or 0)
    for i, ev in enumerate(items[:MAX_LINES]):
        if i:
            t.append("\n")
        t.append("⚠ ", style="bold yellow")
        t.append(f"step {ev.get('step')} {ev.get('rule')}: ", style="bold")
        t.append(str(ev.get("diagnosis") or ""))
        t.append("  fix: ", style="bold green")
        t.append(str(ev.get("fix") or ""))
    if len(items) > MAX_LINES:
        t.append(f"\n… and {len(items) - MAX_LINES} more", style="dim")
    return t


class HealthPanel(Static):
    """The health rules firing now (yellow ⚠), one line each: the step it started, the rule, what it saw and
    the fix. Hidden while every rule is quiet; `?` lists the rules."""

    def show(self, health: dict[str, dict[str, Any]]) -> None:
        self.set_class(bool(health), "-visible")
        self.border_title = f"Health: {len(health)} warning{'s' if len(health) != 1 else ''}"
        self.update(warnings_text(health))
