"""Reward playground: score one completion with every reward of a preset.

The computing half; the `grpo-tui rewards` front end (arguments, rich table)
is tui/console/rewards.py. Each reward gets the call it gets in training
(engine/rewards/trl_call.py TrlReward): a user function sees the completion as TRL's
``[{"role": "assistant", "content": text}]``, a built-in sees the text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .answer_format import REASONING
from .builtin import GSM8K_RECIPE, THINK_RECIPE
from .chat_format import as_messages
from .extract import PROMPT_FORMATS, extract_answer, is_correct
from .spec import RewardSpecError, label, resolve_reward

EXAMPLE_COMPLETION = REASONING.render("3 apples plus 4 apples make 7 apples.", "7")


def _split(entry: Any, name: str) -> tuple[float, dict]:
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        return float(entry), {}
    if isinstance(entry, dict):
        options = {k: v for k, v in entry.items() if k != "weight"}
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise RewardSpecError(f"reward {name!r}: weight must be a number, got {weight!r}")
        return float(weight), options
    raise RewardSpecError(f"reward {name!r}: expected a weight or a table with 'weight' and options, got {entry!r}")


def default_rewards(prompt_format: str) -> dict[str, float]:
    names = THINK_RECIPE if prompt_format == "think" else GSM8K_RECIPE
    return {n: 1.0 for n in names}


def score_completion(
    text: str,
    gold: str,
    rewards: dict[str, float | dict] | None = None,
    prompt_format: str = "reasoning",
    base_dir: Path | None = None,
    completion_ids: list[int] | None = None,
    question: str = "",
) -> dict:
    """Score one completion. ``rewards`` maps a spec to a weight or {weight, **options}.

    Returns {"rewards": [{"name", "score", "weight", "weighted", "failure"}...],
    "scores": {name: score}, "weighted": {name: weighted}, "total",
    "extracted", "correct"}. A score of None: the reward returned None (does
    not apply; left out of the total). Spec errors raise RewardSpecError; a
    reward that fails at run time scores 0 and its failure is in its row.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise RewardSpecError(f"prompt format {prompt_format!r}: expected one of {', '.join(PROMPT_FORMATS)}")
    from grpo_tui.engine.rewards.trl_call import TrlReward

    rewards = default_rewards(prompt_format) if rewards is None else rewards
    rows = []
    prompt, completion = as_messages(question, text)
    # what the trainer passes besides the texts: the gold under both names, and a trainer state at step 0
    kwargs: dict[str, Any] = {
        "answer": [gold],
        "question": [question],
        "trainer_state": {"global_step": 0, "max_steps": 0, "epoch": 0.0},
    }
    if completion_ids is not None:
        kwargs["completion_ids"] = [completion_ids]
    for name, entry in rewards.items():
        weight, options = _split(entry, name)
        fn = TrlReward(label(name), resolve_reward(name, options, base_dir), prompt_format, fail_fast=False)
        try:
            value = fn([prompt], [completion], **kwargs)[0]
        finally:
            fn.close()
        failures = fn.guarded.drain_failures()
        score = None if math.isnan(value) else value  # None: the reward does not apply to this completion
        rows.append(
            {
                "name": name,
                "score": score,
                "weight": weight,
                "weighted": None if score is None else score * weight,
                "failure": failures[0] if failures else None,
            }
        )
    extracted = extract_answer(text, prompt_format)
    return {
        "rewards": rows,
        "scores": {r["name"]: r["score"] for r in rows},
        "weighted": {r["name"]: r["weighted"] for r in rows},
        "total": sum(r["weighted"] for r in rows if r["weighted"] is not None),  # TRL's nansum
        "extracted": extracted,
        "correct": is_correct(extracted, gold),
        "prompt_format": prompt_format,
    }
