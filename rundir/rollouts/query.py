"""Queries over a run's rollouts: the columnar `Rollouts` snapshot, filters, per-step summaries, export.

A snapshot holds numpy columns for the numbers and Arrow string arrays for the
text, so filters and searches are vectorised. A group re-recorded after a
resume (same step and group index) replaces the earlier one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from grpo_tui.rundir.rollouts.records import CompletionRecord, GroupRecord, ReadReport
from grpo_tui.rundir.rollouts.segments import Chunk, _merge, _numbers, completion_record

_TOKEN_CHUNKS = 4  # segment chunks whose per-token columns stay in memory once looked at


@dataclass(frozen=True)
class RolloutFilter:
    """Combinable filters over completions; None/empty = no constraint."""

    correct: bool | None = None
    truncated: bool | None = None
    zero_std: bool | None = None  # True: only groups whose totals are all equal; False: only the others
    reward_min: float | None = None  # on the completion's total reward
    reward_max: float | None = None
    step_min: int | None = None
    step_max: int | None = None
    text: str = ""  # case-insensitive substring of the prompt or the completion; /re/ for a regex (RE2)

    def is_empty(self) -> bool:
        return self == RolloutFilter()

    def describe(self) -> str:
        parts = []
        if self.correct is not None:
            parts.append("correct" if self.correct else "incorrect")
        if self.truncated is not None:
            parts.append("truncated" if self.truncated else "not truncated")
        if self.zero_std is not None:
            parts.append("zero-std groups" if self.zero_std else "groups with signal")
        if self.reward_min is not None or self.reward_max is not None:
            parts.append(f"reward {_fmt_range(self.reward_min, self.reward_max)}")
        if self.step_min is not None or self.step_max is not None:
            parts.append(f"steps {_fmt_range(self.step_min, self.step_max)}")
        if self.text:
            parts.append(f"text {self.text!r}")
        return ", ".join(parts) or "none"


def _fmt_range(lo: float | None, hi: float | None) -> str:
    f = lambda x: "" if x is None else f"{x:g}"  # noqa: E731
    return f"{f(lo)}..{f(hi)}"


def parse_range(text: str, kind: type = float) -> tuple[Any, Any]:
    """'a..b', 'a..', '..b' or 'a' -> (lo, hi); '' -> (None, None). Raises ValueError with the fix."""
    s = text.strip()
    if not s:
        return None, None
    lo_s, sep, hi_s = s.partition("..")
    if not sep:
        v = kind(s)
        return v, v
    lo = kind(lo_s) if lo_s.strip() else None
    hi = kind(hi_s) if hi_s.strip() else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{text!r}: the low end is above the high end; write low..high")
    return lo, hi


@dataclass
class StepSummary:
    step: np.ndarray
    groups: np.ndarray
    completions: np.ndarray
    mean_reward: np.ndarray
    accuracy: np.ndarray
    zero_std_frac: np.ndarray
    mean_tokens: np.ndarray
    truncated_frac: np.ndarray
    matches: np.ndarray | None  # completions matching the filter, per step


@dataclass
class Selection:
    filter: RolloutFilter
    mask: np.ndarray  # bool per completion (live groups only)
    group_matches: np.ndarray  # int per group
    count: int
    seconds: float


class Rollouts:
    """An immutable, columnar snapshot of a run's rollouts. `extend` returns a new one."""

    def __init__(self, chunks: Iterable[Chunk] = (), report: ReadReport | None = None) -> None:
        import pyarrow as pa

        self.chunks = [c for c in chunks if c.groups]
        self.report = report or ReadReport()
        ch = self.chunks
        cat = lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt)  # noqa: E731
        self.g_v = cat([c.v for c in ch], np.int64)
        self.g_step = cat([c.step for c in ch], np.int64)
        self.g_group = cat([c.group for c in ch], np.int64)
        self.g_n = cat([c.n for c in ch], np.int64)
        self.g_start = np.zeros(len(self.g_n), dtype=np.int64)
        if len(self.g_n):
            np.cumsum(self.g_n[:-1], out=self.g_start[1:])
        self.prompt = pa.chunked_array([c.prompt for c in ch], pa.string())
        self.gold = pa.chunked_array([c.gold for c in ch], pa.string())
        self.extra = pa.chunked_array([c.extra for c in ch], pa.string())
        self.text = pa.chunked_array([c.text for c in ch], pa.string())
        self.extracted = pa.chunked_array([c.extracted for c in ch], pa.string())
        self.cextra = pa.chunked_array([c.cextra for c in ch], pa.string())
        # where each chunk's completions start: per-token arrays are looked up in their chunk
        self.chunk_start = np.cumsum([0] + [c.completions for c in ch]).astype(np.int64)
        self._token_chunks: list[Chunk] = []
        self.correct = cat([c.correct for c in ch], bool)
        self.truncated = cat([c.truncated for c in ch], bool)
        self.total = cat([c.total for c in ch], np.float64)
        self.advantage = cat([c.advantage for c in ch], np.float64)
        self.tokens = cat([c.tokens for c in ch], np.int64)
        names: list[str] = []
        for c in ch:
            names += [k for k in c.rewards if k not in names]
        self.reward_names = names
        self.rewards = {
            k: cat([c.rewards.get(k, np.full(c.completions, np.nan)) for c in ch], np.float64) for k in names
        }
        G, C = len(self.g_step), len(self.total)
        self.c_gid = np.repeat(np.arange(G, dtype=np.int64), self.g_n)
        self.c_index = np.arange(C, dtype=np.int64) - self.g_start[self.c_gid] if C else np.zeros(0, np.int64)

        # The latest record of each (step, group) wins: a resumed run records its redone steps again.
        self.g_live = np.ones(G, dtype=bool)
        if G:
            order = np.lexsort((np.arange(G), self.g_group, self.g_step))
            s, g = self.g_step[order], self.g_group[order]
            last = np.ones(G, dtype=bool)
            last[:-1] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
            self.g_live[order[~last]] = False
        self.report.replaced = int(G - self.g_live.sum())
        self.c_live = self.g_live[self.c_gid]

        # Per group: mean and spread of the totals, correct count.
        fin = np.isfinite(self.total)
        tot0 = np.where(fin, self.total, 0.0)
        self.g_mean = np.full(G, np.nan)
        self.g_std = np.full(G, np.nan)
        self.g_zero_std = np.zeros(G, dtype=bool)
        self.g_correct = np.zeros(G, dtype=np.int64)
        nz = self.g_n > 0
        if C and nz.any():
            idx = self.g_start[nz]
            cnt = np.add.reduceat(fin.astype(np.float64), idx)
            s1 = np.add.reduceat(tot0, idx)
            s2 = np.add.reduceat(tot0 * tot0, idx)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s1 / cnt
                self.g_mean[nz] = mean
                self.g_std[nz] = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
            hi = np.maximum.reduceat(np.where(fin, self.total, -np.inf), idx)
            lo = np.minimum.reduceat(np.where(fin, self.total, np.inf), idx)
            # all totals equal: GRPO's advantage is zero for the whole group, no learning signal
            self.g_zero_std[nz] = (hi - lo <= 1e-6) | (cnt <= 1)
            self.g_correct[nz] = np.add.reduceat(self.correct.astype(np.int64), idx)

        # Steps (live groups only) and where each group sits among them.
        self.steps = np.unique(self.g_step[self.g_live])
        self.g_stepidx = np.searchsorted(self.steps, self.g_step)
        self.g_stepidx[~self.g_live] = -1
        self._prompt_ids: np.ndarray | None = None
        self._summary: StepSummary | None = None

    # ------------------------------------------------------------ growing
    def extend(self, chunks: list[Chunk], report: ReadReport | None = None) -> Rollouts:
        """A new snapshot with more chunks; small trailing chunks (a live run's polls) are merged."""
        chunks = [c for c in chunks if c.groups]
        if not chunks:
            if report is not None and report is not self.report:
                return self._successor(self.chunks, report)
            return self
        old = list(self.chunks)
        for c in chunks:
            if old and old[-1].groups < 2048 and c.groups < 2048 and getattr(old[-1], "_tail", False):
                old[-1] = _merge(old[-1], c)
            else:
                c._tail = True  # type: ignore[attr-defined]
                old.append(c)
        return self._successor(old, report or self.report)

    def _successor(self, chunks: list[Chunk], report: ReadReport | None) -> Rollouts:
        """A snapshot over these chunks that goes on with this one's loaded token columns (they share the
        chunks: without them a live browser would load a segment's columns per snapshot and never unload)."""
        new = Rollouts(chunks, report)
        new._token_chunks = [c for c in self._token_chunks if any(c is x for x in chunks)]
        return new

    # ------------------------------------------------------------ sizes
    @property
    def num_groups(self) -> int:
        return int(self.g_live.sum())

    @property
    def num_completions(self) -> int:
        return int(self.c_live.sum())

    def nbytes(self) -> int:
        arrays = [self.prompt, self.gold, self.text, self.extracted, self.extra, self.cextra]
        return (
            sum(a.nbytes for a in arrays)
            + sum(a.nbytes for a in self.rewards.values())
            + sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
        )

    # ------------------------------------------------------------ steps
    def summary(self, selection: Selection | None = None) -> StepSummary:
        """Per step: groups, completions, mean reward, accuracy, zero-std group fraction, mean length."""
        if selection is None and self._summary is not None:
            return self._summary
        S = len(self.steps)
        gi = self.g_stepidx[self.g_live]
        ci = self.g_stepidx[self.c_gid][self.c_live]
        groups = np.bincount(gi, minlength=S)
        comps = np.bincount(ci, minlength=S)
        tot = self.total[self.c_live]
        fin = np.isfinite(tot)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = StepSummary(
                step=self.steps,
                groups=groups,
                completions=comps,
                mean_reward=np.bincount(ci[fin], tot[fin], minlength=S) / np.bincount(ci[fin], minlength=S),
                accuracy=np.bincount(ci, self.correct[self.c_live], minlength=S) / comps,
                zero_std_frac=np.bincount(gi, self.g_zero_std[self.g_live], minlength=S) / groups,
                mean_tokens=np.bincount(ci, self.tokens[self.c_live], minlength=S) / comps,
                truncated_frac=np.bincount(ci, self.truncated[self.c_live], minlength=S) / comps,
                matches=None,
            )
        if selection is None:
            self._summary = out
            return out
        sel_ci = self.g_stepidx[self.c_gid][selection.mask]
        return replace(out, matches=np.bincount(sel_ci, minlength=S))

    def step_groups(self, step: int) -> np.ndarray:
        """Live group ids of a step, by group index."""
        gids = np.flatnonzero(self.g_live & (self.g_step == step))
        return gids[np.argsort(self.g_group[gids], kind="stable")]

    # ------------------------------------------------------------ prompts
    @property
    def prompt_ids(self) -> np.ndarray:
        if self._prompt_ids is None:
            import pyarrow as pa
            import pyarrow.compute as pc

            if len(self.g_step):
                enc = pc.dictionary_encode(pa.concat_arrays(self.prompt.chunks))
                self._prompt_ids = _numbers(enc.indices, np.int64, -1)
            else:
                self._prompt_ids = np.zeros(0, dtype=np.int64)
        return self._prompt_ids

    def history(self, gid: int) -> np.ndarray:
        """Every live group with the same prompt as group `gid`, by step (then group index)."""
        ids = self.prompt_ids
        gids = np.flatnonzero(self.g_live & (ids == ids[gid]))
        return gids[np.lexsort((self.g_group[gids], self.g_step[gids]))]

    # ------------------------------------------------------------ records
    def group_record(self, gid: int) -> dict[str, Any]:
        """One group as a JSONL-shaped dict."""
        s, n = int(self.g_start[gid]), int(self.g_n[gid])
        extra = self.extra[gid].as_py()
        return GroupRecord(
            step=int(self.g_step[gid]),
            group=int(self.g_group[gid]),
            prompt=self.prompt[gid].as_py(),
            gold=self.gold[gid].as_py(),
            completions=[self._record(c) for c in range(s, s + n)],
            v=int(self.g_v[gid]),
            extra=json.loads(extra) if extra else {},
        ).to_dict()

    def _record(self, c: int) -> CompletionRecord:
        return completion_record(self, c, self.text[c].as_py(), self.extracted[c].as_py(), self.cextra[c].as_py())

    def token_arrays(self, c: int) -> dict[str, np.ndarray | None]:
        """Completion c's per-token arrays (records.TOKEN_ARRAYS), None where not recorded.

        A segment's per-token columns are read when one of its completions is first asked for; the
        few most recently used stay in memory."""
        i = int(np.searchsorted(self.chunk_start, c, side="right")) - 1
        chunk = self.chunks[i]
        if chunk.token_source is not None:
            self._token_chunks = [x for x in self._token_chunks if x is not chunk] + [chunk]
            while len(self._token_chunks) > _TOKEN_CHUNKS:
                self._token_chunks.pop(0).unload_tokens()
        return chunk.token_arrays(c - int(self.chunk_start[i]))

    def _completion(self, c: int) -> dict[str, Any]:
        return self._record(c).to_dict()

    # ------------------------------------------------------------ filters
    def select(self, f: RolloutFilter) -> Selection:
        """The completions (of live groups) that pass every filter in f."""
        import pyarrow.compute as pc

        t0 = time.perf_counter()
        m = self.c_live.copy()
        if f.correct is not None:
            m &= self.correct == f.correct
        if f.truncated is not None:
            m &= self.truncated == f.truncated
        if f.zero_std is not None:
            m &= self.g_zero_std[self.c_gid] == f.zero_std
        if f.reward_min is not None:
            m &= self.total >= f.reward_min  # NaN totals fail both bounds
        if f.reward_max is not None:
            m &= self.total <= f.reward_max
        if f.step_min is not None or f.step_max is not None:
            gm = np.ones(len(self.g_step), dtype=bool)
            if f.step_min is not None:
                gm &= self.g_step >= f.step_min
            if f.step_max is not None:
                gm &= self.g_step <= f.step_max
            m &= gm[self.c_gid]
        if f.text and m.any():
            regex = len(f.text) > 2 and f.text.startswith("/") and f.text.endswith("/")
            if regex:
                match = lambda arr: pc.match_substring_regex(arr, f.text[1:-1])  # noqa: E731
            else:
                match = lambda arr: pc.match_substring(arr, f.text, ignore_case=True)  # noqa: E731
            gm = _bools(match(self.prompt), len(self.g_step))
            hit = gm[self.c_gid]
            # search only the completions still in play, in the chunks that have any
            hit |= self._match_text(match, m & ~hit)
            m &= hit
        gcount = np.bincount(self.c_gid[m], minlength=len(self.g_step))
        return Selection(f, m, gcount, int(m.sum()), time.perf_counter() - t0)

    def _match_text(self, match, want: np.ndarray) -> np.ndarray:
        out = np.zeros(len(want), dtype=bool)
        pos = 0
        for arr in self.text.chunks:
            n = len(arr)
            if want[pos : pos + n].any():
                out[pos : pos + n] = _bools(match(arr), n)
            pos += n
        return out

    # ------------------------------------------------------------ export
    def export_jsonl(self, path: Path | str, mask: np.ndarray | None = None) -> int:
        """Write the selected completions (all live ones by default), one JSON object a line.
        Written to a temporary name, then renamed. Returns the number of lines."""
        mask = self.c_live if mask is None else mask
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        n = 0
        with open(tmp, "w", encoding="utf-8") as out:
            for c in np.flatnonzero(mask):
                gid = int(self.c_gid[c])
                rec = {
                    "step": int(self.g_step[gid]),
                    "group": int(self.g_group[gid]),
                    "index": int(self.c_index[c]),
                    "prompt": self.prompt[gid].as_py(),
                    "gold": self.gold[gid].as_py(),
                    **self._completion(int(c)),
                }
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
        return n


def _bools(arr, n: int) -> np.ndarray:
    return _numbers(arr, bool, False).reshape(n)
