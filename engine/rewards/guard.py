"""GuardedReward: a reward function that cannot take training down by accident.

A guarded call returns one float per completion: finite, or NaN where the
function returned None for that completion ("not applicable", as in TRL: the
trainer leaves it out of the weighted sum). The function is called with keyword
arguments only, as TRL calls it. What goes wrong scores 0 for the completions
it concerns and is counted:

- ``exception``: the call raised. The batch is retried one completion at a
  time so only the completions that raise score 0 (a group-aware reward then
  sees groups of one for that batch).
- ``none``: the function returned None instead of a list.
- ``nan``: NaN or infinite value. ``bad_value``: not a number at all.
- ``bad_length``: a list of the wrong length (the whole batch scores 0).
- ``timeout``: built-ins report math-verify deadlines per completion; a user
  function gets ``timeout_s`` per completion for the whole call (a batch of 16
  gets 16 x timeout_s). Past the deadline every completion of the call scores
  0. A user reward *file* (isolated.ProcessReward) runs in a worker process,
  which is killed at the deadline and restarted for the next call; its exit or
  crash is an ``exception``. A plain callable handed to ``guard`` runs in a
  thread, which cannot be killed: the abandoned call keeps running in the
  background and, while it does, later calls are ``skipped`` (score 0).
- ``error``: math-verify itself failed on a completion (built-ins).

``drain_failures()`` returns and clears what was counted since the last drain:
one dict per reward that failed, ``{"name", "count", "kind", "kinds",
"example"}`` (``kind`` is the first kind seen, ``kinds`` counts each kind,
``example`` is one short human-readable line).

``broken()`` says whether the last call failed on every one of its completions
through the function's own fault (raised, or returned something that is not a
reward): the trainer stops the run on that (``BrokenRewardError``) instead of
training on zeros. Timeouts are not counted there: a slow machine is not a bug.
"""

from __future__ import annotations

import math
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .builtin import RewardFailure
from .chat_format import message_text
from .isolated import RewardCallError
from .worker import WorkerTimeout

EXAMPLE_CHARS = 160
BROKEN_EXAMPLE_CHARS = 260
# Keyword arguments that describe the whole batch, never sliced per completion.
_BATCH_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "prompt_format", "environments"})
# Failures that are the function's own fault; every completion of a call failing so is a bug, not noise.
FATAL_KINDS = frozenset({"exception", "none", "nan", "bad_value", "bad_length"})
_UNSET = object()


class BrokenRewardError(RuntimeError):
    """A reward failed on every completion of a batch; the message names it, the error and a completion."""


def _excerpt(text: Any) -> str:
    s = text if isinstance(text, str) else message_text(text) if isinstance(text, list) else str(text)
    s = s.replace("\n", "\\n")
    return s if len(s) <= EXAMPLE_CHARS else s[: EXAMPLE_CHARS - 3] + "..."


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, RewardCallError):  # already "Type: message at file:line", from the worker
        return str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


class GuardedReward:
    """Wraps ``fn(*, prompts, completions, **kwargs)``; see the module docstring."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        timeout_s: float | None = None,
        *,
        threaded: bool | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "reward")
        self.__name__ = self.name  # TRL names reward columns after __name__
        self.timeout_s = timeout_s
        # Built-ins bound their own slow part (math-verify) and run inline;
        # user functions run in a thread with a deadline when timeout_s is set.
        self.threaded = (
            (
                timeout_s is not None
                and not getattr(fn, "builtin", False)
                and not getattr(fn, "inline", False)
                and not hasattr(fn, "call_with_deadline")
            )
            if threaded is None
            else threaded
        )
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._first_kind: str | None = None
        self._example: str | None = None
        self._hung: threading.Thread | None = None
        self.calls = 0
        self.total_failures = 0
        # the latest call: its size, how many of its completions failed by the function's fault, one example
        self._last_n = 0
        self._last_fatal = 0
        self._last_example: str | None = None

    # -------------------------------------------------------------- failures
    def _fail(self, kind: str, count: int, detail: str) -> None:
        if count <= 0:
            return
        with self._lock:
            self._failures[kind] = self._failures.get(kind, 0) + count
            self.total_failures += count
            if kind in FATAL_KINDS:
                self._last_fatal += count
                if self._last_example is None:
                    self._last_example = detail
            if self._first_kind is None:
                self._first_kind = kind
                self._example = detail

    def drain_failures(self) -> list[dict]:
        """What failed since the last drain (empty list if nothing), and reset."""
        with self._lock:
            if not self._failures:
                return []
            out = [
                {
                    "name": self.name,
                    "count": sum(self._failures.values()),
                    "kind": self._first_kind,
                    "kinds": dict(self._failures),
                    "example": self._example,
                }
            ]
            self._failures, self._first_kind, self._example = {}, None, None
            return out

    def broken(self) -> str | None:
        """Why the last call failed on every completion by the function's own fault, or None."""
        if self._last_n == 0 or self._last_fatal < self._last_n:
            return None
        example = self._last_example or ""
        if len(example) > BROKEN_EXAMPLE_CHARS:  # the error event's message is one short line
            example = example[: BROKEN_EXAMPLE_CHARS - 3] + "..."
        return (
            f"reward {self.name!r} failed on every completion of the batch ({self._last_n} of {self._last_n}): "
            f"{example}"
        )

    # ------------------------------------------------------------------ call
    def _invoke(self, deadline_s: float | None, kwargs: dict) -> tuple[str, Any]:
        """('ok', value) | ('exception', exc) | ('timeout', None) | ('skipped', None)."""
        if hasattr(self.fn, "call_with_deadline"):
            # a user reward file: its worker process is killed past the deadline, so nothing keeps running
            try:
                return "ok", self.fn.call_with_deadline(deadline_s, kwargs)
            except WorkerTimeout:
                return "timeout", None
            except Exception as e:  # noqa: BLE001
                return "exception", e
        if not self.threaded or deadline_s is None:
            try:
                return "ok", self.fn(**kwargs)
            except Exception as e:  # noqa: BLE001
                return "exception", e
        if self._hung is not None:
            if self._hung.is_alive():
                return "skipped", None
            self._hung = None
        box: list = []

        def run() -> None:
            try:
                box.append(("ok", self.fn(**kwargs)))
            except BaseException as e:  # noqa: BLE001
                box.append(("exception", e))

        t = threading.Thread(target=run, name=f"reward:{self.name}", daemon=True)
        t.start()
        t.join(deadline_s)
        if t.is_alive():
            self._hung = t
            return "timeout", None
        return box[0]

    def __call__(self, prompts: Any = None, completions: Any = (), answer: Any = _UNSET, **kwargs: Any) -> list[float]:
        """One float per completion (NaN: not applicable). ``answer`` may come third, as the built-ins take it."""
        self.calls += 1
        completions = list(completions)
        n = len(completions)
        with self._lock:
            self._last_n, self._last_fatal, self._last_example = n, 0, None
        if n == 0:
            return []
        kw = dict(kwargs, prompts=prompts, completions=completions)
        if answer is not _UNSET:
            kw["answer"] = answer
        deadline = None if self.timeout_s is None else self.timeout_s * n
        status, value = self._invoke(deadline, kw)
        if status == "exception":
            return self._per_completion(kw, value)
        if status in ("timeout", "skipped"):
            why = (
                f"call on {n} completions took longer than {deadline:g}s; first completion: {_excerpt(completions[0])}"
                if status == "timeout"
                else "previous call still running past its deadline"
            )
            self._fail(status, n, why)
            return [0.0] * n
        return self._clean(value, completions)

    def _clean(self, value: Any, completions: list) -> list[float]:
        n = len(completions)
        first = f"first completion: {_excerpt(completions[0])}"
        if value is None:
            self._fail("none", n, f"returned None instead of a list; {first}")
            return [0.0] * n
        try:
            values = list(value)
        except TypeError:
            self._fail("bad_value", n, f"returned {type(value).__name__}, not a list of {n} floats; {first}")
            return [0.0] * n
        if len(values) != n:
            self._fail("bad_length", n, f"returned {len(values)} values for {n} completions; {first}")
            return [0.0] * n
        out: list[float] = []
        for text, v in zip(completions, values):
            if isinstance(v, RewardFailure):
                self._fail(v.kind, 1, f"{v.detail}; completion: {_excerpt(text)}")
                out.append(0.0)
                continue
            if v is None:  # not applicable to this completion (TRL: NaN, left out of the weighted sum)
                out.append(math.nan)
                continue
            try:
                f = float(v)
            except (TypeError, ValueError):
                self._fail("bad_value", 1, f"returned {v!r} ({type(v).__name__}) for completion: {_excerpt(text)}")
                out.append(0.0)
                continue
            if not math.isfinite(f):
                self._fail("nan", 1, f"returned {f} for completion: {_excerpt(text)}")
                out.append(0.0)
                continue
            out.append(f)
        return out

    def _per_completion(self, kw: dict, batch_exc: BaseException) -> list[float]:
        completions = kw["completions"]
        n = len(completions)

        def pick(v: Any, i: int) -> Any:
            if isinstance(v, (list, tuple)) and len(v) == n:
                return [v[i]]
            return v

        out: list[float] = []
        for i, text in enumerate(completions):
            one = {k: (v if k in _BATCH_KWARGS else pick(v, i)) for k, v in kw.items()}
            status, value = self._invoke(self.timeout_s, one)
            if status == "exception":
                self._fail("exception", 1, f"{_error_line(value)}; completion: {_excerpt(text)}")
                out.append(0.0)
            elif status != "ok":
                # a hang while isolating: give up on the rest of the batch
                rest = n - i
                self._fail(status, rest, f"while isolating {_error_line(batch_exc)}: one completion took too long")
                out.extend([0.0] * rest)
                break
            else:
                out.extend(self._clean(value, [text]))
        return out


def guard(fn: Callable[..., Any], name: str | None = None, timeout_s: float | None = 5.0) -> GuardedReward:
    """Wrap a reward function so it never raises and always returns finite floats.

    ``timeout_s`` is the per-completion budget for user functions (the whole
    call gets timeout_s x batch size, in a worker thread); built-ins run inline
    and bound math-verify per completion themselves. None disables the thread.
    """
    if isinstance(fn, GuardedReward):
        return fn
    return GuardedReward(fn, name, timeout_s)


def drain_all(guarded: list[GuardedReward]) -> list[dict]:
    """All failures of several guarded rewards since the last drain."""
    out: list[dict] = []
    for g in guarded:
        out.extend(g.drain_failures())
    return out
