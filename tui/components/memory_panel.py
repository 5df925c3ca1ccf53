"""GPU memory (allocated, reserved, peak, NVML) against the card, or process RSS without a GPU, with history."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from grpo_tui.rundir.state import RunState
from grpo_tui.tui.text import safe_text

# (fraction above which, colour, meaning) of a memory bar, highest first
BAR_LEVELS = (
    (0.9, "red", "above 90% of the card: close to out of memory"),
    (0.75, "yellow", "above 75%: little headroom"),
    (-1.0, "green", "room to spare"),
)


def _gb(x: Any) -> str:
    return f"{x:.2f} GB" if isinstance(x, (int, float)) else "-"


def _bar(value: Any, total: Any, width: int = 12) -> Text:
    if not isinstance(value, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        return Text("")
    frac = max(0.0, min(1.0, value / total))
    full = int(round(frac * width))
    style = next(s for level, s, _ in BAR_LEVELS if frac > level)
    return Text("█" * full, style=style) + Text("░" * (width - full), style="dim") + Text(f" {100 * frac:.0f}%")


class _Lines:
    def __init__(self) -> None:
        self.lines: list[Text] = []

    def add_row(self, label: str, value: Text, bar: Text) -> None:
        line = Text(f"{label:<11}", style="dim")
        line.append_text(Text(f"{value.plain:<12}"))
        line.append_text(bar)
        self.lines.append(line)

    def text(self) -> Text:
        return Text("\n").join(self.lines)


class MemoryPanel(Vertical):
    """Memory against the limit: GPU allocated, reserved and peak (and NVML's view) on a GPU, the process RSS
    without one; bars coloured by BAR_LEVELS, and a sparkline of the history."""

    _shape: tuple = ()

    def compose(self):
        yield Static("No memory sample yet.", id="memory-text")
        yield Sparkline([], id="memory-spark", summary_function=max)

    def show(self, m: RunState) -> None:
        if not m.memory:
            return
        last = m.memory[-1]
        gpu = last.get("allocated_gb") is not None
        total = last.get("total_gb")
        t = _Lines()
        if gpu:
            t.add_row("card", safe_text(f"{last.get('device')}  {_gb(total)}"), Text(""))
            t.add_row("allocated", Text(_gb(last.get("allocated_gb"))), _bar(last.get("allocated_gb"), total))
            t.add_row("reserved", Text(_gb(last.get("reserved_gb"))), _bar(last.get("reserved_gb"), total))
            t.add_row("peak", Text(_gb(last.get("peak_gb"))), _bar(last.get("peak_gb"), total))
            if last.get("peak_reserved_gb") is not None:
                # what torch's allocator held at most: the figure to set against the card
                t.add_row(
                    "peak rsvd", Text(_gb(last.get("peak_reserved_gb"))), _bar(last.get("peak_reserved_gb"), total)
                )
            if last.get("nvml_used_gb") is not None:
                t.add_row("nvml used", Text(_gb(last.get("nvml_used_gb"))), _bar(last.get("nvml_used_gb"), total))
            t.add_row("engine rss", Text(_gb(last.get("rss_gb"))), Text(""))
            key, label = "reserved_gb", "reserved"
        else:
            t.add_row("device", Text(f"{last.get('device', 'cpu')} (no GPU)"), Text(""))
            t.add_row("engine rss", Text(_gb(last.get("rss_gb"))), _bar(last.get("rss_gb"), total))
            t.add_row("RAM", Text(_gb(total)), Text(""))
            key, label = "rss_gb", "rss"
        ranks = last.get("ranks") or []
        for i, r in enumerate(ranks):
            # a multi-process run: one line per rank (per GPU), reserved on GPUs, RSS on CPUs
            rk = "reserved_gb" if r.get("reserved_gb") is not None else "rss_gb"
            t.add_row(f"rank {i}", Text(f"{_gb(r.get(rk))}"), _bar(r.get(rk), r.get("total_gb")))
        history = [float(e[key]) for e in m.memory if isinstance(e.get(key), (int, float))]
        # rows only change with the device kind and the number of ranks
        shape = (gpu, last.get("nvml_used_gb") is not None, last.get("peak_reserved_gb") is not None, len(ranks))
        self.query_one("#memory-text", Static).update(t.text(), layout=shape != self._shape)
        self._shape = shape
        self.query_one("#memory-spark", Sparkline).data = history
        self.border_subtitle = f"{label} over last {len(history)} samples"
