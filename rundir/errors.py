"""The errors of grpo-tui: the base error (a message for the user and the exit code it means), and the run
directory's.

Every error that names a bad input and its fix (a preset, a reward spec, a model,
an eval dataset, a run directory) subclasses `GrpoTuiError`, so entry points catch it once,
print its message and exit with its code (2: usage, nothing was written).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class GrpoTuiError(Exception):
    """A failure the user can fix; the message names the file, field and fix."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UnsafeRunDir(GrpoTuiError):
    """A run directory (or a file in it) the engine refuses to use; the message names the path and the fix."""
