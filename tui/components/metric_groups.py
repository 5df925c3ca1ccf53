"""Which of TRL's logged metrics the curves panel draws together (no Textual here).

The curves panel shows one group at a time as two plots side by side; `g`
cycles the groups. "rewards" is the dashboard's original view (drawn by
tui/components/curves.py itself); the others are declared here: each plot
lists (metric key, legend label, 256-colour code, y side). Keys are those of a
`step` event's `metrics` (TRL 1.16 GRPOTrainer logging names).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    color: int
    yside: str = "left"
    # TRL logs 0 for a terminated-length metric when every completion was cut off; drawn as a gap there, not 0
    terminated_only: bool = False


@dataclass(frozen=True)
class PlotSpec:
    title: str
    lines: tuple[Line, ...]
    ylim01: tuple[str, ...] = ()  # y sides that hold fractions (drawn 0..1)
    empty: str = "no data yet"  # shown when none of the lines has a value


@dataclass(frozen=True)
class CurveGroup:
    name: str
    plots: tuple[PlotSpec, PlotSpec] | None  # None: the built-in rewards view


GROUPS: tuple[CurveGroup, ...] = (
    CurveGroup("rewards", None),
    CurveGroup(
        "policy",
        (
            PlotSpec(
                "Loss (left) · KL (right)",
                (Line("loss", "loss", 15), Line("kl", "kl", 214, "right")),
                empty="waiting for the first step (KL is logged only when beta > 0)",
            ),
            PlotSpec(
                "Entropy (left) · clip ratios (right)",
                (
                    Line("entropy", "entropy", 14),
                    Line("clip_ratio/region_mean", "clip-region", 9, "right"),
                    Line("clip_ratio/low_mean", "clip-low", 13, "right"),
                    Line("clip_ratio/high_mean", "clip-high", 11, "right"),
                ),
            ),
        ),
    ),
    CurveGroup(
        "optimizer",
        (
            PlotSpec("Gradient norm (before clipping)", (Line("grad_norm", "grad-norm", 10),)),
            PlotSpec("Learning rate", (Line("learning_rate", "learning-rate", 12),)),
        ),
    ),
    CurveGroup(
        "lengths",
        (
            PlotSpec(
                "Completion length, tokens",
                (
                    Line("completions/mean_length", "mean", 14),
                    Line("completions/min_length", "min", 10),
                    Line("completions/max_length", "max", 9),
                    Line("completions/mean_terminated_length", "mean-terminated", 13, terminated_only=True),
                ),
            ),
            PlotSpec(
                "Truncated (cut at max_completion_length)",
                (Line("completions/clipped_ratio", "truncated", 11),),
                ylim01=("left",),
            ),
        ),
    ),
)

GROUP_NAMES = tuple(g.name for g in GROUPS)
KNOB_MARK_COLOR = 250
