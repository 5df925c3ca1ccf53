"""The selected completion in full: format tags highlighted, extracted answer marked, gold beside it."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from grpo_tui.tui.fmt import fixed
from grpo_tui.tui.text import safe_text

TAG = re.compile(r"</?(reasoning|answer|think)>")
TAG_STYLE = {"reasoning": "bold magenta", "think": "bold magenta", "answer": "bold cyan"}
BODY_STYLE = {"reasoning": "", "think": "", "answer": "bold"}


def highlight_completion(text: str, extracted: str | None, correct: bool) -> Text:
    """The completion with <reasoning>/<answer>/<think> tags coloured and the extracted answer marked."""
    out = Text()
    region: str | None = None
    answer_spans: list[tuple[int, int]] = []
    pos = 0
    for m in TAG.finditer(text):
        body = text[pos : m.start()]
        start = len(out)
        out.append(body, style=BODY_STYLE.get(region or "", ""))
        if region == "answer":
            answer_spans.append((start, len(out)))
        name = m.group(1)
        out.append(m.group(0), style=TAG_STYLE[name])
        region = None if m.group(0).startswith("</") else name
        pos = m.end()
    start = len(out)
    out.append(text[pos:], style=BODY_STYLE.get(region or "", ""))
    if region == "answer":
        answer_spans.append((start, len(out)))
    if extracted:
        mark = "bold black on green" if correct else "bold black on yellow"
        plain = out.plain
        # The extraction reads the answer block when there is one, else the end of the text:
        # mark the last occurrence inside an answer block, falling back to the last one anywhere.
        hit = -1
        for lo, hi in reversed(answer_spans):
            hit = plain.rfind(extracted, lo, hi)
            if hit >= 0:
                break
        if hit < 0:
            hit = plain.rfind(extracted)
        if hit >= 0:
            out.stylize(mark, hit, hit + len(extracted))
    return out


def describe_completion(step: int, group: dict[str, Any], index: int) -> Text:
    comps = group.get("completions") or []
    c = comps[index]
    head = Text()
    head.append(f"step {step} · group {group.get('group', '?')} · completion {index + 1}/{len(comps)}\n", style="bold")
    head.append(
        f"total {fixed(c.get('total'))}   advantage {fixed(c.get('advantage'), signed=True)}   "
        f"{c.get('tokens', '?')} tokens"
    )
    if c.get("truncated"):
        head.append("   truncated", style="bold yellow")
    head.append("\n")
    head.append("gold ", style="dim")
    head.append(str(group.get("gold", "?")), style="bold green")
    head.append("   extracted ", style="dim")
    extracted = c.get("extracted")
    if extracted is None:
        head.append("none", style="bold red")
    else:
        head.append(str(extracted), style="bold green" if c.get("correct") else "bold yellow")
        head.append("  ✓ correct" if c.get("correct") else "  ✗ wrong", style="green" if c.get("correct") else "red")
    head.append("\n")
    rewards = c.get("rewards") or {}
    head.append("  ".join(f"{k} {fixed(v)}" for k, v in rewards.items()), style="dim")
    head.append("\n\n")
    head.append_text(highlight_completion(str(c.get("text", "")), extracted, bool(c.get("correct"))))
    return safe_text(head)


LEGEND = (
    ("bold magenta", "<reasoning> / <think> tags"),
    ("bold cyan", "<answer> tags"),
    ("bold black on green", "the extracted answer, correct"),
    ("bold black on yellow", "the extracted answer, wrong"),
)


class CompletionView(RichLog):
    """Scrollable full text of the completion picked in the group table.

    A RichLog (a scroll view with its own virtual size) rather than a Static in a
    scroll container: replacing the text then repaints this panel only, where a
    Static of a new height would re-lay out the whole screen on every step.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, auto_scroll=False, min_width=1, **kw)
        self._shown: tuple | None = None
        self._text: Text = Text("No completion yet: rollouts appear after the first step.", style="dim")
        self._width = 0

    def on_mount(self) -> None:
        self._write()

    def _write(self) -> None:
        self.clear()
        width = self.scrollable_content_region.width
        self.write(self._text, width=width if width > 0 else None, scroll_end=False)
        self.scroll_to(0, 0, animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:  # the lines were wrapped for the old width
            self._width = event.size.width
            self._write()

    def show(self, step: int, group: dict[str, Any], index: int) -> None:
        comps = group.get("completions") or []
        if not 0 <= index < len(comps):
            return
        key = (step, group.get("group"), index, id(group))
        if key == self._shown:
            return
        self._shown = key
        self._text = describe_completion(step, group, index)
        self.border_subtitle = safe_text(f"gold {group.get('gold', '?')}", one_line=True)
        self._write()

    @property
    def text(self) -> str:
        return self._text.plain
