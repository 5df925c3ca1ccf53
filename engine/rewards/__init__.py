"""The reward library: built-in rewards, answer extraction, the judgment, guards.

API (what the engine and the TUI import from ``engine.rewards``)::

    REWARDS: dict[str, RewardFn]
        Built-in rewards by name: correctness, int_answer, strict_format,
        soft_format, xmlcount (the five of the TRL GSM8K recipe),
        correctness_normalized, math_equivalence, think_format,
        correctness_think, length_penalty. VALUES[name] is each one's value.
        A built-in is fn(prompts, completions, answer, **kwargs) -> list[float]
        with plain-text prompts and completions; kwargs may hold
        completion_ids, prompt_format ("reasoning" | "think"), other dataset
        columns and whatever TRL passes (trainer_state, log_extra, log_metric).

    resolve_reward(spec, options=None, base_dir=None) -> RewardFn
        spec: a built-in name, "path/to/file.py:function_name" (relative to
        base_dir, the preset's folder), "package.module:function_name" (an
        installed module, e.g. "trl.rewards:accuracy_reward") or
        "model:PATH_OR_ID" (a sequence-classification reward model). User
        functions are called as TRL calls them (keywords only, TRL's
        conversational format): trl_call.TrlReward makes that call.
        options: the reward's keyword options (reward_options(fn) lists them
        with defaults; a "weight" key is ignored). Raises RewardSpecError
        naming the reward and the fix.

    guard(fn, name=None, timeout_s=5.0) -> GuardedReward
        Callable like a RewardFn (calls fn with keywords only), never raises,
        one float per completion: finite, or NaN where fn returned None (not
        applicable, as in TRL); failures score 0. .drain_failures() -> list of
        {"name", "count", "kind", "kinds", "example"} since the last drain
        (one entry per failing reward). drain_all(guards) drains several.
        .broken() -> why the last call failed on every completion, or None
        (the trainer raises BrokenRewardError on it).

    answer_format.ANSWER_FORMATS: dict[str, AnswerFormat]
        The prompt formats, one record each: tags, system prompt, worked
        example, extractor, stop string, strict/soft patterns. Prompts,
        extraction, the format rewards and eval scoring all read them.

    extract_answer(text, prompt_format="reasoning") -> str | None
        "reasoning": text inside the last <answer>...</answer> (to the end if
        unclosed), None without an <answer> tag. "think": after the last
        </think> (None without one): last \\boxed{}, else <answer>, else the
        last number.

    is_correct(extracted, gold, *, timeout_s=None) -> bool   (never raises)
        Multiple choice (gold A-E) strictly by letter; two numbers exactly
        after normalization (1,000 = 1000, $18, 18.00, 18 dollars, 18.);
        otherwise math-verify equivalence, bounded (default 5 s).

    gold_from_solution(text, kind) -> str | None
        kind "gsm8k" (after ####, thousands separators removed), "boxed" (last
        \\boxed{} of a MATH solution, nested braces), "plain" (stripped).

    score_completion(...) lives in engine.rewards.score_completion (its CLI: tui/console/rewards.py)
    (imported lazily: it needs rich).

    mathverify.warm_up() starts the math-verify worker process ahead of the
    first step; mathverify.shutdown() stops it (also done at exit).
"""

from __future__ import annotations

from typing import Any, Protocol

from . import mathverify
from .builtin import GSM8K_RECIPE, REWARDS, THINK_RECIPE, VALUES, RewardFailure, count_xml
from .chat_format import message_text
from .extract import (
    extract_answer,
    format_number,
    gold_from_solution,
    is_correct,
    judge,
    last_boxed,
    last_number,
    multiple_choice_letter,
    parse_number,
)
from .guard import BrokenRewardError, GuardedReward, drain_all, guard
from .spec import RewardSpecError, resolve_reward, reward_options


class RewardFn(Protocol):
    """fn(*, prompts, completions, **kwargs) -> one float (or None: not applicable) per completion."""

    def __call__(self, *, prompts: Any, completions: list[Any], **kwargs: Any) -> list[float | None]: ...


__all__ = [
    "REWARDS",
    "RewardFn",
    "VALUES",
    "GSM8K_RECIPE",
    "THINK_RECIPE",
    "RewardFailure",
    "RewardSpecError",
    "BrokenRewardError",
    "GuardedReward",
    "message_text",
    "guard",
    "drain_all",
    "resolve_reward",
    "reward_options",
    "extract_answer",
    "is_correct",
    "judge",
    "gold_from_solution",
    "last_boxed",
    "last_number",
    "parse_number",
    "format_number",
    "multiple_choice_letter",
    "count_xml",
    "mathverify",
]
