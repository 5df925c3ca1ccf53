"""The built-in reward functions.

Every function takes ``(prompts, completions, answer, **kwargs)`` with plain
text completions and returns one float per completion. Options a preset may set
are the keyword-only parameters (``resolve_reward`` validates them).

Per-completion failures that are not the completion's fault (math-verify timing
out on a pathological expression) are returned as ``RewardFailure`` values:
floats equal to 0.0 that carry a kind and a detail, so an unguarded caller sees
0 and ``GuardedReward`` counts and reports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .answer_format import REASONING, THINK
from .extract import extract_answer, is_correct, judge, last_boxed
from .mathverify import MathVerifyError


class RewardFailure(float):
    """0.0 for a completion this reward could not score (kind: timeout, error...)."""

    def __new__(cls, kind: str, detail: str = "") -> RewardFailure:
        obj = super().__new__(cls, 0.0)
        obj.kind = kind
        obj.detail = detail
        return obj

    def __repr__(self) -> str:
        return f"RewardFailure({self.kind!r}, {self.detail!r})"


def _golds(answer, n: int, name: str) -> list:
    if answer is None:
        raise ValueError(f"reward {name!r} needs the dataset's 'answer' column (gold answers); none was passed")
    if isinstance(answer, str):
        return [answer] * n
    answer = list(answer)
    if len(answer) != n:
        raise ValueError(f"reward {name!r}: {len(answer)} gold answers for {n} completions")
    return answer


def _judged(extracted: str | None, gold, value: float, timeout_s: float | None) -> float:
    try:
        return value if judge(extracted, None if gold is None else str(gold), timeout_s=timeout_s) else 0.0
    except MathVerifyError as e:
        return RewardFailure(e.kind, str(e))


# ----------------------------------------------------- the GSM8K recipe (five)

# The recipe's format rewards score the <reasoning>/<answer> format; its record holds the tags and patterns.
_PATTERNS = REASONING.patterns
_THOUGHT, _ANSWER = REASONING.thought, REASONING.answer
_INT_RE = re.compile(r"-?[0-9]+")


def correctness(prompts=None, completions=(), answer=None, **kwargs) -> list[float]:
    """2.0 when the text inside the last <answer> tag equals the gold answer exactly (stripped)."""
    golds = _golds(answer, len(completions), "correctness")
    out = []
    for text, gold in zip(completions, golds):
        got = REASONING.extract(text)
        gold = "" if gold is None else str(gold).strip()
        out.append(2.0 if gold and got == gold else 0.0)
    return out


def int_answer(prompts=None, completions=(), answer=None, **kwargs) -> list[float]:
    """0.5 when the text inside the last <answer> tag is an integer (ASCII digits, optional minus)."""
    out = []
    for text in completions:
        got = REASONING.extract(text)
        out.append(0.5 if got is not None and _INT_RE.fullmatch(got) else 0.0)
    return out


def strict_format(prompts=None, completions=(), answer=None, *, final_newline: bool = True, **kwargs) -> list[float]:
    """0.5 for exactly <reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n (blocks may span lines)."""
    pattern = _PATTERNS.strict if final_newline else _PATTERNS.strict_open_end
    out = []
    for text in completions:
        # the original's `$` also accepted one extra newline at the very end
        t = text[:-1] if text.endswith("\n\n") else text
        out.append(0.5 if pattern.fullmatch(t) else 0.0)
    return out


def soft_format(prompts=None, completions=(), answer=None, **kwargs) -> list[float]:
    """0.5 when the completion starts with a <reasoning> block followed by an <answer> block, any whitespace."""
    return [0.5 if _PATTERNS.soft.match(text) else 0.0 for text in completions]


def count_xml(text: str) -> float:
    """The recipe's tag score: 0.125 per well-placed tag, minus 0.001 per character after </answer>."""
    count = 0.0
    close = f"\n{_ANSWER.close}"
    if text.count(f"{_THOUGHT.open}\n") == 1:
        count += 0.125
    if text.count(f"\n{_THOUGHT.close}\n") == 1:
        count += 0.125
    if text.count(f"\n{_ANSWER.open}\n") == 1:
        count += 0.125
        if close + "\n" in text:  # original: whole text length when the closing tag is missing
            count -= len(text.split(close + "\n")[-1]) * 0.001
    if text.count(close) == 1:
        count += 0.125
        count -= max(0, len(text.split(close)[-1]) - 1) * 0.001  # original: could be -1 (a bonus)
    return count


def xmlcount(prompts=None, completions=(), answer=None, **kwargs) -> list[float]:
    """Up to 0.5: 0.125 per well-placed tag, minus 0.001 per character after the closing tag."""
    return [count_xml(text) for text in completions]


# -------------------------------------------------------- graders beyond exact


def correctness_normalized(
    prompts=None, completions=(), answer=None, *, timeout_s: float = 5.0, prompt_format: str | None = None, **kwargs
) -> list[float]:
    """2.0 when the extracted answer equals the gold as a grader reads it (1,000 = 1000, $18, 18.00, 18 dollars)."""
    golds = _golds(answer, len(completions), "correctness_normalized")
    fmt = prompt_format or "reasoning"
    return [_judged(extract_answer(t, fmt), g, 2.0, timeout_s) for t, g in zip(completions, golds)]


def math_equivalence(prompts=None, completions=(), answer=None, *, timeout_s: float = 5.0, **kwargs) -> list[float]:
    """1.0 when the last \\boxed{} is mathematically equivalent to the gold (math-verify; letters A-E strictly)."""
    golds = _golds(answer, len(completions), "math_equivalence")
    return [_judged(last_boxed(t), g, 1.0, timeout_s) for t, g in zip(completions, golds)]


# ------------------------------------------------------ the <think> recipe

_THINK_OPEN, _THINK_CLOSE = THINK.thought.open, THINK.thought.close


def think_format(prompts=None, completions=(), answer=None, *, require_open_tag: bool = True, **kwargs) -> list[float]:
    """0.5 for <think>reasoning</think> followed by a non-empty answer, one of each tag."""
    out = []
    for text in completions:
        ok = False
        if text.count(_THINK_CLOSE) == 1:
            before, after = text.split(_THINK_CLOSE)
            opens = before.count(_THINK_OPEN)
            stripped = before.lstrip()
            if opens == 1 and stripped.startswith(_THINK_OPEN):
                thought = stripped[len(_THINK_OPEN) :]
            elif opens == 0 and not require_open_tag:  # template put <think> in the prompt
                thought = before
            else:
                thought = ""
            ok = bool(thought.strip()) and bool(after.strip()) and _THINK_OPEN not in after
        out.append(0.5 if ok else 0.0)
    return out


def correctness_think(prompts=None, completions=(), answer=None, *, timeout_s: float = 5.0, **kwargs) -> list[float]:
    """1.0 when the answer after </think> (last \\boxed{}, <answer>, or last number) matches the gold."""
    golds = _golds(answer, len(completions), "correctness_think")
    return [_judged(THINK.extract(t), g, 1.0, timeout_s) for t, g in zip(completions, golds)]


def _length_options(min_tokens: int = 500, max_tokens: int = 800, penalty: float = -0.1, ramp_tokens=None) -> None:
    if min_tokens < 0 or max_tokens <= 0 or min_tokens > max_tokens:
        raise ValueError(f"need 0 <= min_tokens <= max_tokens and max_tokens > 0 (got {min_tokens}, {max_tokens})")
    if penalty > 0:
        raise ValueError(f"penalty is the most negative value and must be <= 0 (got {penalty})")
    if ramp_tokens is not None and ramp_tokens <= 0:
        raise ValueError(f"ramp_tokens must be > 0 (got {ramp_tokens})")


def length_penalty(
    prompts=None,
    completions=(),
    answer=None,
    *,
    min_tokens: int = 500,
    max_tokens: int = 800,
    penalty: float = -0.1,
    ramp_tokens: int | None = None,
    completion_ids=None,
    **kwargs,
) -> list[float]:
    """0 inside [min_tokens, max_tokens]; outside, ramps linearly to `penalty` (-0.1) over ramp_tokens."""
    ramp = ramp_tokens or (max_tokens - min_tokens) or max_tokens
    out = []
    for i, text in enumerate(completions):
        if completion_ids is not None and i < len(completion_ids) and completion_ids[i] is not None:
            n = len(completion_ids[i])
        else:
            n = len(text.split())  # whitespace estimate when token ids are not given
        if n < min_tokens:
            dist = min_tokens - n
        elif n > max_tokens:
            dist = n - max_tokens
        else:
            dist = 0
        out.append(penalty * min(1.0, dist / ramp) if dist else 0.0)
    return out


length_penalty.validate_options = _length_options  # type: ignore[attr-defined]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "correctness": correctness,
    "int_answer": int_answer,
    "strict_format": strict_format,
    "soft_format": soft_format,
    "xmlcount": xmlcount,
    "correctness_normalized": correctness_normalized,
    "math_equivalence": math_equivalence,
    "think_format": think_format,
    "correctness_think": correctness_think,
    "length_penalty": length_penalty,
}
for _name, _fn in REWARDS.items():
    _fn.builtin = True  # type: ignore[attr-defined]

# What each reward returns at best (length_penalty: at worst); docs and tests read this.
VALUES: dict[str, float] = {
    "correctness": 2.0,
    "int_answer": 0.5,
    "strict_format": 0.5,
    "soft_format": 0.5,
    "xmlcount": 0.5,
    "correctness_normalized": 2.0,
    "math_equivalence": 1.0,
    "think_format": 0.5,
    "correctness_think": 1.0,
    "length_penalty": -0.1,
}

# The five functions of the common TRL GSM8K recipe, in the recipe's order.
GSM8K_RECIPE = ("xmlcount", "soft_format", "strict_format", "int_answer", "correctness")
THINK_RECIPE = ("correctness_think", "think_format", "length_penalty")

__all__ = ["REWARDS", "VALUES", "GSM8K_RECIPE", "THINK_RECIPE", "RewardFailure", "count_xml", "is_correct"]
