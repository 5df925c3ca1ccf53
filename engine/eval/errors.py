"""The error every evaluation step raises for a model or dataset it can't use."""

from __future__ import annotations

from grpo_tui.rundir.errors import GrpoTuiError


class EvalError(GrpoTuiError, RuntimeError):
    """A model or dataset that can't be evaluated; the message says what to do."""
