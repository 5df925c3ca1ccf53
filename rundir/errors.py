"""The one base error of grpo-tui: a message for the user and the exit code it means.

Every error that names a bad input and its fix (a preset, a reward spec, a model,
an eval dataset) subclasses `GrpoTuiError`, so entry points catch it once,
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
