"""The preset's rewards in the shape TRL calls them: one place, importable without torch or TRL.

Pre-flight builds them to check every reward spec (and to start and stop user reward workers)
before anything heavy is imported; the trainer builds them again to train with.
"""

from __future__ import annotations

from typing import Any, Callable

from grpo_tui.engine.config import Config
from grpo_tui.engine.rewards import GuardedReward, resolve_reward

REWARD_TIMEOUT_S = 5.0  # per completion, for user reward functions


def message_text(x: Any) -> str:
    """TRL hands conversational prompts/completions as message lists; rewards take plain text."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x:
        users = [m for m in x if isinstance(m, dict) and m.get("role") == "user"]
        last = (users or x)[-1]
        return last.get("content", "") if isinstance(last, dict) else str(last)
    return ""


class TrlReward:
    """Adapts a library reward (plain text in) to TRL's call (messages in), guarded against failure."""

    def __init__(self, name: str, fn: Callable, prompt_format: str) -> None:
        self.__name__ = name
        self.guarded = GuardedReward(fn, name, timeout_s=REWARD_TIMEOUT_S)
        self.prompt_format = prompt_format

    def close(self) -> None:
        """Stop a user reward's worker process (built-ins have none)."""
        close = getattr(self.guarded.fn, "close", None)
        if close is not None:
            close()

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        answer = kwargs.pop("answer", None)
        return self.guarded([message_text(p) for p in prompts], [message_text(c) for c in completions], answer,
                            prompt_format=self.prompt_format, **kwargs)


def build_rewards(cfg: Config) -> tuple[list[TrlReward], list[float]]:
    """Resolve every reward of the preset; raises RewardSpecError before anything runs."""
    options = cfg.reward_options()
    funcs, weights = [], []
    for name, weight in cfg.reward_weights().items():
        fn = resolve_reward(name, options[name] or None, cfg.base_dir)
        label = name.rsplit(":", 1)[-1] if ":" in name else name
        funcs.append(TrlReward(label, fn, cfg.prompt.format))
        weights.append(weight)
    return funcs, weights


def close_rewards(rewards: list[Any]) -> None:
    """Stop the worker processes of user rewards built only to be checked."""
    for r in rewards:
        close = getattr(r, "close", None)
        if close is not None:
            close()
