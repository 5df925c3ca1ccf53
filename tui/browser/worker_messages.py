"""Messages the browser's workers post; only the app's thread touches widgets."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from grpo_tui.rundir.rollouts import RolloutFilter, Rollouts, Selection, StepSummary
from grpo_tui.rundir.state import RunState


class RolloutsLoaded(Message):
    """A newer snapshot of the run's rollouts (the first one, or one with new groups)."""

    def __init__(self, rollouts: Rollouts, seconds: float, first: bool) -> None:
        super().__init__()
        self.rollouts, self.seconds, self.first = rollouts, seconds, first


class SelectionReady(Message):
    """A filter applied to a snapshot; dropped if either changed meanwhile."""

    def __init__(self, rollouts: Rollouts, selection: Selection, summary: StepSummary) -> None:
        super().__init__()
        self.rollouts, self.selection, self.summary = rollouts, selection, summary


class SelectionFailed(Message):
    """A filter the store could not apply (an invalid regular expression)."""

    def __init__(self, rollouts: Rollouts, filter: RolloutFilter, error: str) -> None:
        super().__init__()
        self.rollouts, self.filter, self.error = rollouts, filter, error


class RunsListed(Message):
    def __init__(self, runs: list[RunState]) -> None:
        super().__init__()
        self.runs = runs


class Exported(Message):
    def __init__(self, path: Path, count: int, error: str | None = None) -> None:
        super().__init__()
        self.path, self.count, self.error = path, count, error
