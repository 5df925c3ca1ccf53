"""The windowed means every run summary quotes: the first and the last fifth of a run's steps.

One step's reward is noise (a handful of groups); the run summary, `compare` and
the run list all quote the mean over the first and the last fifth of the steps
(at least one step each), with its standard error, from this one function, so
the same run reads the same everywhere. No torch, no textual.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

WINDOW_FRACTION = 5  # each window is 1/5 of the steps


@dataclass(frozen=True)
class Trend:
    window: int  # steps in each window
    first: float  # mean over the first `window` steps with a value
    first_se: float  # its standard error (0 for a one-step window)
    last: float
    last_se: float

    def span(self, digits: int = 3) -> str:
        """The two means as a table cell shows them: first→last."""
        return f"{self.first:.{digits}f}→{self.last:.{digits}f}"

    def text(self, digits: int = 3) -> str:
        if self.window == 1:
            return f"first step {self.first:.{digits}f}  ->  last step {self.last:.{digits}f}"
        return (
            f"first {self.window} steps {self.first:.{digits}f} ± {self.first_se:.{digits}f}  ->  "
            f"last {self.window} steps {self.last:.{digits}f} ± {self.last_se:.{digits}f}"
        )


def window_size(n: int) -> int:
    return max(1, n // WINDOW_FRACTION)


def mean_and_stderr(xs: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than 2 values)."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    mean = sum(xs) / n
    if n < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


def trend(values: Iterable[float | None]) -> Trend | None:
    """First and last windowed means of a per-step series (missing and non-finite values left out)."""
    xs = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not xs:
        return None
    k = window_size(len(xs))
    (a, ae), (b, be) = mean_and_stderr(xs[:k]), mean_and_stderr(xs[-k:])
    return Trend(k, a, ae, b, be)
