"""Shared start-up of the worker scripts (imported by path-run scripts: stdlib only, nothing of ours)."""

import os


def tie_to_parent(mem_limit_mb: int = 0) -> None:
    """Die with the trainer even while stuck in C code (Linux), and optionally cap memory."""
    parent = os.getppid()
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: stdin EOF still ends the loop
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
    if mem_limit_mb > 0:
        try:
            import resource

            limit = mem_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except Exception:  # noqa: BLE001
            pass
