"""Bounded mathematical equivalence with math-verify.

math-verify bounds its own work with ``signal.alarm``, which only works on the
main thread of the main interpreter; TRL may call reward functions elsewhere
and a thread cannot be interrupted at all while sympy runs. So math-verify runs
with its timeouts disabled in a small worker *process* (``_mathverify_worker.py``,
started lazily, one per trainer process) and each comparison gets a deadline:
past it the worker is killed (which also stops work stuck in C code and frees
the CPU, unlike an abandoned thread) and restarted on the next call. A plain
subprocess with pipes rather than ``multiprocessing`` because the trainer has
torch/CUDA loaded (no fork) and ``spawn`` would re-import the trainer's
``__main__``.

Results are cached (GRPO groups repeat answers). A comparison that timed out
raises ``MathVerifyTimeout`` again from the cache without re-running.
If the worker cannot be started at all, comparisons run in-process in a daemon
thread with the same deadline (the thread is abandoned on timeout).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

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


class _Launcher:
    """Starts worker processes from one long-lived thread.

    The worker asks the kernel to kill it when the thread that started it
    exits (PR_SET_PDEATHSIG is per thread, not per process), so it must not be
    started from a short-lived thread such as a guarded user reward's.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: queue.Queue | None = None

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(*args, **kwargs)
        with self.lock:
            if self.requests is None:
                self.requests = queue.Queue()
                threading.Thread(target=self._serve, args=(self.requests,), name="math-verify-launcher", daemon=True).start()
        reply: queue.Queue = queue.Queue()
        self.requests.put((args, kwargs, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    @staticmethod
    def _serve(requests: queue.Queue) -> None:
        while True:
            args, kwargs, reply = requests.get()
            try:
                reply.put((True, subprocess.Popen(*args, **kwargs)))
            except BaseException as e:  # noqa: BLE001
                reply.put((False, e))

    def after_fork_in_child(self) -> None:
        self.lock, self.requests = threading.Lock(), None


_launcher = _Launcher()


class _Worker:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.lock = threading.Lock()
        self.restarts = 0
        self.unavailable: str | None = None  # why the process path is off

    # -- process management ---------------------------------------------------
    def _start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = _launcher.popen(
            [sys.executable, "-u", str(_WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.buf = b""
        line = self._readline(time.monotonic() + STARTUP_TIMEOUT_S)
        if line != b"ready":
            self._kill()
            raise RuntimeError(f"math-verify worker did not start (got {line!r})")

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass

    def _readline(self, deadline: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math-verify worker exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.strip()

    def _after_fork_in_child(self) -> None:
        # The child must not share the parent's pipes (or a lock held at fork time).
        self.proc, self.buf, self.lock = None, b"", threading.Lock()

    def _ensure_started(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._kill()
                self.restarts += 1
            self._start()

    # -- one comparison -------------------------------------------------------
    def compare(self, pred: str, gold: str, timeout_s: float) -> bool:
        msg = json.dumps({"p": pred, "g": gold}).encode() + b"\n"
        with self.lock:
            self._ensure_started()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(msg)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                # died while idle (e.g. killed from outside): one fresh start, then give up
                self._kill()
                self.restarts += 1
                self._start()
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(msg)
                self.proc.stdin.flush()
            try:
                line = self._readline(time.monotonic() + timeout_s)
            except (EOFError, OSError) as e:
                self._kill()  # died on this input (out of memory, crash): that pair fails
                raise MathVerifyError(f"math-verify worker died on this answer: {e}") from e
            if line is None:
                self._kill()  # restarted lazily by the next call
                self.restarts += 1
                raise MathVerifyTimeout(f"math-verify took longer than {timeout_s:g}s")
            reply = json.loads(line)
            if "err" in reply:
                raise MathVerifyError(reply["err"])
            return bool(reply["ok"])

    def close(self) -> None:
        with self.lock:
            self._kill()


_worker = _Worker()
atexit.register(_worker.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_launcher.after_fork_in_child)
    os.register_at_fork(after_in_child=_worker._after_fork_in_child)
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
            _worker._ensure_started()
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
