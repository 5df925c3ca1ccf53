"""Bounded mathematical equivalence with math-verify.

math-verify bounds its own work with ``signal.alarm``, which only works on the
main thread of the main interpreter; TRL may call reward functions elsewhere
and a thread cannot be interrupted at all while sympy runs. So math-verify runs
with its timeouts disabled in a small worker *process* (``_mathverify_worker.py``,
started lazily, one per trainer process, through ``worker.WorkerProcess``) and
each comparison gets a deadline: past it the worker is killed (which also stops
work stuck in C code and frees the CPU, unlike an abandoned thread) and
restarted on the next call.

Results are cached (GRPO groups repeat answers). A comparison that timed out
raises ``MathVerifyTimeout`` again from the cache without re-running.
If the worker cannot be started at all, comparisons run in-process in a daemon
thread with the same deadline (the thread is abandoned on timeout).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from .worker import WorkerError, WorkerProcess, WorkerStartError, WorkerTimeout

DEFAULT_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 120.0
_WORKER_SCRIPT = Path(__file__).with_name("_mathverify_worker.py")
_CACHE_SIZE = 50_000
_CACHE_MAX_CHARS = 2_000  # long pairs are not worth keeping
# An "answer" longer than this is prose, not an answer: judged wrong without
# asking math-verify (which could spend its whole deadline on it).
MAX_ANSWER_CHARS = 1_000


class MathVerifyError(RuntimeError):
    """math-verify failed on this pair (kind names the failure)."""

    kind = "error"


class MathVerifyTimeout(MathVerifyError):
    kind = "timeout"


class _Worker(WorkerProcess):
    """The math-verify worker (_mathverify_worker.py): one comparison per request line."""

    def __init__(self) -> None:
        super().__init__([sys.executable, "-u", str(_WORKER_SCRIPT)], startup_timeout_s=STARTUP_TIMEOUT_S)
        self.unavailable: str | None = None  # why the process path is off

    def start(self) -> bytes:
        line = super().start()
        if line != b"ready":
            self.kill()
            raise RuntimeError(f"math-verify worker did not start (got {line!r})")
        return line

    def compare(self, pred: str, gold: str, timeout_s: float) -> bool:
        try:
            line = self.request(json.dumps({"p": pred, "g": gold}).encode(), timeout_s)
        except WorkerStartError as e:
            raise RuntimeError(f"math-verify worker did not start: {e}") from None  # caller falls back in-process
        except WorkerTimeout:
            raise MathVerifyTimeout(f"math-verify took longer than {timeout_s:g}s") from None
        except WorkerError as e:
            raise MathVerifyError(f"math-verify worker died on this answer: {e}") from e
        reply = json.loads(line)
        if "err" in reply:
            raise MathVerifyError(reply["err"])
        return bool(reply["ok"])


_worker = _Worker()
_cache: OrderedDict[tuple[str, str], object] = OrderedDict()
_cache_lock = threading.Lock()


def _in_process(pred: str, gold: str, timeout_s: float) -> bool:
    """Fallback when no worker process can run: a daemon thread with a deadline."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def wrap(s: str) -> str:
        return s if ("\\boxed" in s or s.startswith("$")) else "\\boxed{" + s + "}"

    result: list = []

    def run() -> None:
        try:
            g = parse(wrap(gold), parsing_timeout=None)
            p = parse(wrap(pred), parsing_timeout=None)
            result.append(bool(g) and bool(p) and verify(g, p, timeout_seconds=None))
        except Exception as e:  # noqa: BLE001
            result.append(MathVerifyError(f"{type(e).__name__}: {e}"))

    t = threading.Thread(target=run, daemon=True, name="math-verify")
    t.start()
    t.join(timeout_s)
    if not result:
        raise MathVerifyTimeout(f"math-verify took longer than {timeout_s:g}s (in-process)")
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def equivalent(pred: str, gold: str, *, timeout_s: float | None = None) -> bool:
    """math-verify equivalence of two answers (bare LaTeX or text; wrapped in \\boxed{}).

    Raises MathVerifyTimeout past ``timeout_s`` (default 5 s) and
    MathVerifyError when math-verify itself fails.
    """
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    if len(pred) > MAX_ANSWER_CHARS:
        return False
    key = (pred, gold)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            hit = _cache[key]
            if isinstance(hit, MathVerifyTimeout):
                raise MathVerifyTimeout(str(hit))
            return bool(hit)
    try:
        if _worker.unavailable is None:
            try:
                ok = _worker.compare(pred, gold, timeout_s)
            except (RuntimeError, OSError) as e:
                if isinstance(e, MathVerifyError):
                    raise
                _worker.unavailable = f"{type(e).__name__}: {e}"
                ok = _in_process(pred, gold, timeout_s)
        else:
            ok = _in_process(pred, gold, timeout_s)
    except MathVerifyTimeout as e:
        with _cache_lock:
            _cache[key] = e
        raise
    if len(pred) + len(gold) <= _CACHE_MAX_CHARS:
        with _cache_lock:
            _cache[key] = ok
            if len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return ok


def warm_up() -> None:
    """Start the worker now (about half a second) so the first step does not wait."""
    if _worker.unavailable is not None:
        return
    try:
        with _worker.lock:
            _worker.ensure_started()
    except Exception as e:  # noqa: BLE001 - the first comparison falls back in-process
        _worker.unavailable = f"{type(e).__name__}: {e}"


def shutdown() -> None:
    """Stop the worker process (it is also stopped at exit and when the parent dies)."""
    _worker.close()


def stats() -> dict:
    return {
        "worker_pid": _worker.proc.pid if _worker.proc is not None else None,
        "restarts": _worker.restarts,
        "unavailable": _worker.unavailable,
        "cached": len(_cache),
    }
