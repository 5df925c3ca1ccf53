"""The preset's rewards in the shape TRL calls them: one place, importable without torch or TRL.

Pre-flight builds them to check every reward spec (and to start and stop user reward workers)
before anything heavy is imported; the trainer builds them again to train with.

TRL calls ``reward(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=...,
log_extra=..., log_metric=...)``. A user function (file, module) and a reward model get that call as it
is, plus the gold under ``solution`` as well as ``answer``; a built-in gets the same call with the prompts
and completions turned into text (engine/rewards/chat_format.py), the one place text and TRL's format meet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpo_tui.engine.rewards.chat_format import message_text
from grpo_tui.engine.rewards.guard import BrokenRewardError, GuardedReward

REWARD_TIMEOUT_S = 5.0  # per completion, for user reward functions


class TrlReward:
    """One reward as TRL calls it, guarded against failure; stops the run when it fails on a whole batch."""

    def __init__(self, name: str, fn: Callable, prompt_format: str, *, fail_fast: bool = True) -> None:
        self.__name__ = name
        self.guarded = GuardedReward(fn, name, timeout_s=REWARD_TIMEOUT_S)
        self.prompt_format = prompt_format
        self.builtin = bool(getattr(fn, "builtin", False))
        self.fail_fast = fail_fast

    def close(self) -> None:
        """Stop a user reward's worker process (built-ins have none)."""
        close = getattr(self.guarded.fn, "close", None)
        if close is not None:
            close()

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        """One float per completion; NaN where the function returned None (not applicable, as in TRL)."""
        if "answer" in kwargs and "solution" not in kwargs:
            kwargs["solution"] = kwargs["answer"]  # TRL's own rewards (accuracy_reward) read the gold there
        if self.builtin:
            prompts, completions = [message_text(p) for p in prompts], [message_text(c) for c in completions]
            kwargs["prompt_format"] = self.prompt_format
        out = self.guarded(prompts=prompts, completions=completions, **kwargs)
        broken = self.guarded.broken() if self.fail_fast else None
        if broken:
            raise BrokenRewardError(
                f"{broken}. The run stops before training on it (return None where a reward does not apply)"
            )
        return out


def close_rewards(rewards: list[Any]) -> None:
    """Stop the worker processes of user rewards built only to be checked."""
    for r in rewards:
        close = getattr(r, "close", None)
        if close is not None:
            close()
