"""Reward and signal curves by step (textual-plotext), drawn at the widget's resolution.

A plotext build costs ~20 ms at 200 points and grows with the points, so each
series is bucketed to one point per column, and a plot only rebuilds its
picture when its data, size or theme changed; the app throttles data changes
(tui.run_follower.CURVE_MIN_INTERVAL). The plots are most of the dashboard's CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from grpo_tui.rundir.state import CLIPPED, CORRECT, MEAN_LENGTH, REWARD, ZERO_STD, ZERO_STD_BEFORE, RunState, reward_key
from grpo_tui.tui.components.metric_groups import GROUPS, KNOB_MARK_COLOR, PlotSpec
from grpo_tui.tui.text import safe_text

SMOOTHING = 0.8
# 256-colour codes: plotext and rich draw the same colour from the same number, so the legend
# (drawn by us above each plot, where it hides no data) matches the lines.
TOTAL_COLOR = 15
REWARD_COLORS = (14, 13, 10, 214, 12, 11, 9, 250)
ZERO_STD_COLOR, TRUNCATED_COLOR, CORRECT_COLOR, LENGTH_COLOR = 9, 11, 10, 14
ZERO_STD_BEFORE_COLOR = 13


def downsample(xs: list[int], ys: list[float | None], max_points: int) -> tuple[list[float], list[float]]:
    """Bucket a series to at most max_points points (mean per bucket), dropping missing values.

    Curves are drawn at the widget's resolution: a 20k-step run costs the same
    to draw as a 200-step one.
    """
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if max_points < 1 or len(pts) <= max_points:
        return [float(x) for x, _ in pts], [y for _, y in pts]
    out_x, out_y = [], []
    n = len(pts)
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        if hi <= lo:
            continue
        chunk = pts[lo:hi]
        out_x.append(sum(p[0] for p in chunk) / len(chunk))
        out_y.append(sum(p[1] for p in chunk) / len(chunk))
    return out_x, out_y


def smooth(ys: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard-style debiased exponential moving average; missing values stay missing."""
    out: list[float | None] = []
    last, norm = 0.0, 0.0
    for y in ys:
        if y is None:
            out.append(None)
            continue
        last = last * weight + (1 - weight) * y
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


class CurvePlot(PlotextPlot):
    """A PlotextPlot that rebuilds its picture only when its inputs changed."""

    def __init__(self, draw: Callable[[Plot, int, int], None], **kw: Any) -> None:
        super().__init__(**kw)
        self._draw = draw
        self._version = 0
        self._key: tuple | None = None
        self._picture: Any = None
        self.builds = 0  # for tests and the benchmark

    def invalidate(self) -> None:
        self._version += 1
        self.refresh()

    def render(self):
        key = (self.size.width, self.size.height, self.app.theme, self._version)
        if key != self._key or self._picture is None:
            self.plt.clear_figure()
            self._draw(self.plt, self.size.width, self.size.height)
            self._picture = super().render()
            self._key = key
            self.builds += 1
        return self._picture


def _points(width: int) -> int:
    return max(8, width - 12)  # one point per column of plot area (the axes take ~12)


PLOT_DIGITS = 6  # significant digits a plotted value keeps (see settle)


def settle(ys: list[float | None], digits: int = 12) -> list[float | None]:
    """Values rounded to `digits` significant digits: an EMA of a constant series comes back as
    23.9999999999999964 / 24.0000000000000000, which plotext would draw as full-height noise with
    absurd axis labels; rounded, it is the constant it was."""
    return [None if y is None else float(f"{y:.{digits}g}") for y in ys]


def step_ticks(lo: float, hi: float, most: int = 5) -> list[int]:
    """A few whole-number steps between lo and hi (plotext would label 1.25, 1.50, ...)."""
    lo_i, hi_i = int(lo), int(round(hi))
    span = max(1, hi_i - lo_i)
    raw = span / max(1, most - 1)
    nice = next(n * 10**e for e in range(0, 9) for n in (1, 2, 5) if n * 10**e >= raw)
    first = (lo_i + nice - 1) // nice * nice if lo_i % nice else lo_i
    ticks = list(range(first, hi_i + 1, nice))
    return ticks or [lo_i]


def terminated_values(ys: list[float | None], clipped: list[float | None]) -> list[float | None]:
    """A terminated-length series with a gap at the steps where nothing terminated (all cut off)."""
    return [None if c is not None and c >= 1 - 1e-9 else y for y, c in zip(ys, clipped)] + list(ys[len(clipped) :])


def legend(items: list[tuple[str, int]]) -> Text:
    """Labels in their line's colour; each label is one word so a wrapped legend never splits one."""
    t = Text()
    for i, (label, color) in enumerate(items):
        if i:
            t.append("  ")
        t.append("━" + label, style=f"bold color({color})")
    return safe_text(t)  # reward names come from the run's config


class RewardCurves(Vertical):
    """Curves by step, two plots of one metric group at a time (g cycles the groups, m smooths); a live-knob
    change is a vertical line at the step it took effect.

    The "rewards" group: the weighted total reward and each function's raw mean (before its weight, so they
    need not add up to the total), and GRPO signal (zero-std, truncated, correct, length).

    The other groups are declared in tui/components/metric_groups.py.
    """

    def __init__(self, state: RunState, **kw: Any) -> None:
        super().__init__(**kw)
        self.state = state
        self.smoothing = False
        self.group = 0  # index into GROUPS

    def compose(self):
        # Legends in one row above both plots, so the plots line up whatever the legends' heights.
        with Horizontal(classes="legends"):
            yield Static("", id="reward-legend", classes="legend")
            yield Static("", id="signal-legend", classes="legend")
        with Horizontal(classes="plots"):
            yield CurvePlot(self._drawer(0), id="reward-plot")
            yield CurvePlot(self._drawer(1), id="signal-plot")

    def on_mount(self) -> None:
        self._signal_legend(filtered=False)
        self._legend_names: Any = None
        self._filtered: bool | None = False
        self._marks = 0

    def _signal_legend(self, filtered: bool) -> None:
        items = [("zero-std-groups", ZERO_STD_COLOR)]
        if filtered:  # dynamic sampling: zero-std as sampled (before) and as trained
            items.append(("zero-std-before-filter", ZERO_STD_BEFORE_COLOR))
        items += [("truncated", TRUNCATED_COLOR), ("correct", CORRECT_COLOR), ("mean-length(right)", LENGTH_COLOR)]
        if self.state.knob_changes:
            items.append(("knob-change", KNOB_MARK_COLOR))
        self.query_one("#signal-legend", Static).update(legend(items))

    @property
    def group_name(self) -> str:
        return GROUPS[self.group].name

    def set_group(self, index: int) -> str:
        """Show another group; returns its name."""
        self.group = index % len(GROUPS)
        self._legend_names = None
        self._filtered = None
        self.redraw()
        return self.group_name

    def _group_legends(self, specs: tuple[PlotSpec, PlotSpec]) -> None:
        """Legends of a metric group: the lines that have data, and the knob-change marker if any."""
        legends = []
        for spec in specs:
            items = [
                (ln.label + ("(right)" if ln.yside == "right" else ""), ln.color)
                for ln in spec.lines
                if any(v is not None for v in self.state.column(ln.key))
            ]
            if self.state.knob_changes:
                items.append(("knob-change", KNOB_MARK_COLOR))
            legends.append(items)
        key = (self.group, repr(legends))
        if key != self._legend_names:  # a legend update re-lays out the screen: only on change
            self._legend_names = key
            for wid, items in zip(("#reward-legend", "#signal-legend"), legends):
                self.query_one(wid, Static).update(legend(items))

    def redraw(self) -> None:
        m = self.state
        specs = GROUPS[self.group].plots
        if specs is not None:
            self._group_legends(specs)
            for plot in self.query(CurvePlot):
                plot.invalidate()
            return
        if m.reward_names != self._legend_names:  # a legend update re-lays out the screen: only on change
            self._legend_names = list(m.reward_names)
            self.query_one("#reward-legend", Static).update(
                legend(
                    [("total(weighted)", TOTAL_COLOR)]
                    + [(f"{n}(raw)", REWARD_COLORS[i % len(REWARD_COLORS)]) for i, n in enumerate(m.reward_names)]
                )
            )
        filtered = any(v is not None for v in m.column(ZERO_STD_BEFORE))
        if filtered != self._filtered or self._marks != len(m.knob_changes):
            self._marks = len(m.knob_changes)
            self._filtered = filtered
            self._signal_legend(filtered)
        for plot in self.query(CurvePlot):
            plot.invalidate()

    def toggle_smoothing(self) -> bool:
        self.smoothing = not self.smoothing
        self.redraw()
        return self.smoothing

    def _line(self, plt: Plot, ys: list, width: int, color: int, yside: str = "left") -> bool:
        # 6 significant digits is finer than any terminal plot can show; it keeps a series that varies in its
        # 7th digit (entropy 10.78986 -> 10.78985) from being drawn as full-height swings under labels like 10.7898684
        ys = settle(smooth(ys, SMOOTHING) if self.smoothing else ys, PLOT_DIGITS)
        xs, vs = downsample(self.state.steps, ys, _points(width))
        if not xs:
            return False
        marker = "braille" if len(xs) > 1 else "●"
        plt.plot(xs, vs, color=color, marker=marker, yside=yside)
        return True

    def _xaxis(self, plt: Plot) -> None:
        steps = self.state.steps
        if steps:
            plt.xticks(step_ticks(steps[0], steps[-1]))
            for ev in self.state.knob_changes:  # live knobs apply from the step after the marker
                if steps[0] <= ev["step"] <= steps[-1]:
                    plt.vline(ev["step"] + 0.5, color=KNOB_MARK_COLOR)
        plt.xlabel("step")

    def _draw_spec(self, plt: Plot, spec: PlotSpec, width: int, height: int) -> None:
        drawn_sides = set()
        for ln in spec.lines:
            ys = self.state.column(ln.key)
            if ln.terminated_only:
                ys = terminated_values(ys, self.state.column(CLIPPED))
            if self._line(plt, ys, width, ln.color, yside=ln.yside):
                drawn_sides.add(ln.yside)
        for side in spec.ylim01:
            if side in drawn_sides:
                plt.ylim(0, 1, yside=side)
        if height >= 14 or not drawn_sides:
            plt.title((spec.title if drawn_sides else f"{spec.title}: {spec.empty}") + self._suffix())
        self._xaxis(plt)

    def _drawer(self, side: int) -> Callable[[Plot, int, int], None]:
        """The draw function of the left (0) or right (1) plot: the shown group's spec for that side."""

        def draw(plt: Plot, width: int, height: int) -> None:
            specs = GROUPS[self.group].plots
            if specs is not None:
                self._draw_spec(plt, specs[side], width, height)
            else:
                (self._draw_rewards if side == 0 else self._draw_signal)(plt, width, height)

        return draw

    def _suffix(self) -> str:
        return f" · smoothed (EMA {SMOOTHING})" if self.smoothing else ""

    def _draw_rewards(self, plt: Plot, width: int, height: int) -> None:
        m = self.state
        drawn = self._line(plt, m.column(REWARD), width, TOTAL_COLOR)
        for i, name in enumerate(m.reward_names):
            drawn |= self._line(plt, m.column(reward_key(name)), width, REWARD_COLORS[i % len(REWARD_COLORS)])
        if height >= 14 or not drawn:  # a short plot keeps its rows for the curves
            plt.title(
                (
                    "Reward: weighted total · raw mean per function (before its weight)"
                    if drawn
                    else "Reward: waiting for the first step"
                )
                + self._suffix()
            )
        self._xaxis(plt)

    def _draw_signal(self, plt: Plot, width: int, height: int) -> None:
        m = self.state
        drawn = self._line(plt, m.column(ZERO_STD), width, ZERO_STD_COLOR)
        if any(v is not None for v in m.column(ZERO_STD_BEFORE)):
            drawn |= self._line(plt, m.column(ZERO_STD_BEFORE), width, ZERO_STD_BEFORE_COLOR)
        drawn |= self._line(plt, m.column(CLIPPED), width, TRUNCATED_COLOR)
        drawn |= self._line(plt, m.column(CORRECT), width, CORRECT_COLOR)
        if drawn:
            plt.ylim(0, 1, yside="left")
        drawn |= self._line(plt, m.column(MEAN_LENGTH), width, LENGTH_COLOR, yside="right")
        if height >= 14 or not drawn:
            plt.title(
                ("Fractions (left) · length (right)" if drawn else "Signal: waiting for the first step")
                + self._suffix()
            )
        self._xaxis(plt)
