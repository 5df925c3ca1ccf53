"""Numbers as the UIs show them: one function per way of writing a number.

Each says what it does with a value that is missing or not a number, since the
UIs differ there on purpose: a table cell shows a dim "-", a knob's input box
starts empty, and a reward that returned None does not apply ("n/a").
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text


def is_real(x: Any) -> bool:
    """An int or a float, not a bool (True is an int to Python, never a number to show)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fixed(x: Any, digits: int = 2, *, signed: bool = False, finite_only: bool = False) -> str:
    """Any real number with `digits` decimals (ints too: 1 -> "1.00"), "+" on positives when signed;
    anything else (None, bool, text) is "-". finite_only: NaN and infinities are "-" too."""
    if not is_real(x) or (finite_only and not math.isfinite(x)):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fixed_cell(x: Any, digits: int = 2, *, signed: bool = False, justify: str | None = None) -> Text:
    """fixed() as a table cell: anything not a number is a dim "-"; signed values are green above zero, red below,
    dim at zero."""
    if not is_real(x):
        return Text("-", style="dim", justify=justify)
    style = ("green" if x > 0 else "red" if x < 0 else "dim") if signed else ""
    return Text(fixed(x, digits, signed=signed), style=style, justify=justify)


def value(x: Any, digits: int = 3) -> str:
    """A logged value: floats with `digits` decimals, ints and text as they are, None as "-"."""
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def significant(x: Any, digits: int = 3) -> str:
    """A logged value: floats to `digits` significant digits (0.000123, 1.5e+03), ints and text as they are,
    None as "-"."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def editable(x: Any) -> str:
    """A number as one would type it into an input box (3e-06, 0.7, 2); anything else is ""."""
    return f"{x:g}" if is_real(x) else ""


def score(x: float | None, digits: int = 3, *, trim: bool = False) -> str:
    """A reward score: signed with `digits` decimals, zero as "0", None (the reward does not apply) as "n/a".
    trim: drop trailing zeros (+0.5000 -> +0.5, +1.0000 -> +1)."""
    if x is None:
        return "n/a"
    if not x:
        return "0"
    out = f"{x:+.{digits}f}"
    return out.rstrip("0").rstrip(".") if trim else out


def param_count(n: Any) -> str:
    """A parameter count at a precision that tells different counts apart: 136,384 -> 0.136M, 4,884,480 -> 4.88M;
    anything not a number is "?"."""
    if not is_real(n):
        return "?"
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"
