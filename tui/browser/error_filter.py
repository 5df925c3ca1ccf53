"""The browser's error-analysis filter: wrong answers by kind (engine.rewards.error_kinds) over a snapshot.

The store (rundir.rollouts) filters on what the engine recorded; the kind of a
wrong answer is judged here, once per snapshot, for the wrong completions only.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, replace

import numpy as np

from grpo_tui.engine.rewards.error_kinds import ERROR_KINDS, classify_error
from grpo_tui.rundir.rollouts import RolloutFilter, Rollouts, Selection

KIND_CODES = {k: i for i, k in enumerate(ERROR_KINDS)}
_cache: weakref.WeakKeyDictionary[Rollouts, np.ndarray] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class BrowserFilter(RolloutFilter):
    """The store's filters plus the kind of wrong answer (a key of ERROR_KINDS)."""

    error_kind: str | None = None

    def is_empty(self) -> bool:
        return self == BrowserFilter()

    def store_filter(self) -> RolloutFilter:
        fields = {k: v for k, v in vars(self).items() if k != "error_kind"}
        return RolloutFilter(**fields)

    def describe(self) -> str:
        base = self.store_filter().describe()
        if self.error_kind is None:
            return base
        kind = ERROR_KINDS.get(self.error_kind, self.error_kind)
        return kind if base == "none" else f"{base}, {kind}"


def error_kind_codes(r: Rollouts) -> np.ndarray:
    """Per completion: the index of its kind in ERROR_KINDS, -1 when correct (or not live)."""
    codes = _cache.get(r)
    if codes is not None:
        return codes
    codes = np.full(len(r.correct), -1, dtype=np.int8)
    for c in np.flatnonzero(r.c_live & ~r.correct):
        gid = int(r.c_gid[c])
        kind = classify_error(
            r.text[c].as_py(), r.extracted[c].as_py(), r.gold[gid].as_py(), False, bool(r.truncated[c])
        )
        if kind is not None:
            codes[c] = KIND_CODES[kind]
    _cache[r] = codes
    return codes


def select(r: Rollouts, f: BrowserFilter) -> Selection:
    """Rollouts.select with the error-kind filter on top. An invalid /regex/ raises ValueError."""
    t0 = time.perf_counter()
    sel = r.select(f.store_filter())
    if f.error_kind is None:
        return replace(sel, filter=f)
    mask = sel.mask & (error_kind_codes(r) == KIND_CODES[f.error_kind])
    gcount = np.bincount(r.c_gid[mask], minlength=len(r.g_step))
    return Selection(f, mask, gcount, int(mask.sum()), time.perf_counter() - t0)
