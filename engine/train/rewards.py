"""The preset's [rewards] as TRL reward functions (engine/rewards/trl_call.py), with their weights."""

from __future__ import annotations

from grpo_tui.engine.config import Config
from grpo_tui.engine.data.prompts import chat_template_kwargs
from grpo_tui.engine.rewards import resolve_reward
from grpo_tui.engine.rewards.spec import label
from grpo_tui.engine.rewards.trl_call import TrlReward


def build_rewards(cfg: Config, *, fail_fast: bool = True) -> tuple[list[TrlReward], list[float]]:
    """Resolve every reward of the preset; raises RewardSpecError before anything runs."""
    options = cfg.reward_options()
    funcs, weights = [], []
    for name, weight in cfg.reward_weights().items():
        fn = resolve_reward(name, options[name] or None, cfg.base_dir)
        if hasattr(fn, "chat_template_kwargs"):  # a reward model renders chats as the policy's prompts are
            fn.chat_template_kwargs = chat_template_kwargs(cfg)
            fn.device = "cpu" if cfg.train.use_cpu else None
        funcs.append(TrlReward(label(name), fn, cfg.prompt.format, fail_fast=fail_fast))
        weights.append(weight)
    return funcs, weights
