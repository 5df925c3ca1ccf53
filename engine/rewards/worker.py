"""A helper process that answers one JSON line per request, killed when it overruns a deadline.

The one mechanism for running code that may hang, crash or call exit outside
the trainer: math-verify comparisons (mathverify.py) and user reward files
(isolated.py) each talk to such a process. A plain subprocess with pipes rather
than ``multiprocessing`` because the trainer has torch/CUDA loaded (no fork)
and ``spawn`` would re-import the trainer's ``__main__``. Past a deadline the
process is killed (which also stops work stuck in C code and frees the CPU,
unlike an abandoned thread) and started again on the next request.
"""

from __future__ import annotations

import os
import queue
import select
import subprocess
import threading
import time
import weakref


class WorkerError(RuntimeError):
    """The worker could not be started, or died while answering."""


class WorkerTimeout(WorkerError):
    """No reply within the deadline; the worker was killed."""


class WorkerStartError(WorkerError):
    """The worker exited or hung before its greeting line."""


class _Launcher:
    """Starts worker processes from one long-lived thread.

    A worker asks the kernel to kill it when the thread that started it exits
    (PR_SET_PDEATHSIG is per thread, not per process), so it must not be
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
                threading.Thread(target=self._serve, args=(self.requests,), name="worker-launcher", daemon=True).start()
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
_workers: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()


class WorkerProcess:
    """`argv` started on demand; it prints one greeting line when ready, then one reply line per request line."""

    def __init__(
        self,
        argv: list[str],
        *,
        startup_timeout_s: float,
        env: dict[str, str] | None = None,
        stderr: int | None = subprocess.DEVNULL,
    ) -> None:
        self.argv, self.startup_timeout_s, self.stderr = argv, startup_timeout_s, stderr
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.lock = threading.Lock()
        self.restarts = 0
        self.greeting: bytes | None = None  # the first line of the latest start
        _workers.add(self)

    # -- process management ---------------------------------------------------
    def start(self) -> bytes:
        """Start the process and return its greeting line; WorkerError if none comes in time."""
        self.proc = _launcher.popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=self.env, close_fds=True
        )
        self.buf = b""
        try:
            line = self.readline(time.monotonic() + self.startup_timeout_s)
        except (EOFError, OSError):
            line = None
            code = self.proc.wait(timeout=5) if self.proc is not None else None
            self.kill()
            raise WorkerStartError(f"exited with code {code} before it was ready") from None
        if line is None:
            self.kill()
            raise WorkerStartError(f"did not get ready within {self.startup_timeout_s:g}s")
        self.greeting = line
        return line

    def kill(self) -> None:
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

    def readline(self, deadline: float | None) -> bytes | None:
        """One line from the worker, None past the deadline; EOFError if it exited."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError("worker exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.strip()

    def after_fork_in_child(self) -> None:
        # The child must not share the parent's pipes (or a lock held at fork time).
        self.proc, self.buf, self.lock = None, b"", threading.Lock()

    def ensure_started(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.kill()
                self.restarts += 1
            self.start()

    # -- one request ----------------------------------------------------------
    def request(self, msg: bytes, timeout_s: float | None) -> bytes:
        """Send one line, return the reply line. WorkerTimeout (worker killed) or WorkerError (it died)."""
        with self.lock:
            self.ensure_started()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(msg + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                # died while idle (e.g. killed from outside): one fresh start
                self.kill()
                self.restarts += 1
                self.start()
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(msg + b"\n")
                self.proc.stdin.flush()
            try:
                line = self.readline(None if timeout_s is None else time.monotonic() + timeout_s)
            except (EOFError, OSError) as e:
                code = self.proc.poll() if self.proc is not None else None
                self.kill()  # died on this input (exit, out of memory, crash): this request fails
                raise WorkerError(f"the worker process exited (code {code}) on this request") from e
            if line is None:
                self.kill()  # restarted lazily by the next request
                self.restarts += 1
                raise WorkerTimeout(f"took longer than {timeout_s:g}s")
            return line

    def close(self) -> None:
        with self.lock:
            self.kill()


def _close_all() -> None:
    for w in list(_workers):
        w.close()


def _after_fork_in_child() -> None:
    _launcher.after_fork_in_child()
    for w in list(_workers):
        w.after_fork_in_child()


import atexit  # noqa: E402

atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
