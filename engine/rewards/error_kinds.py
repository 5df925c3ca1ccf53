"""Error analysis: why a wrong answer is wrong, in one of five kinds.

Pure string work over what a rollout record holds (the completion text, the
extracted answer, the gold answer, the recorded judgment and whether the
completion hit the length limit); the browser filters on these kinds and the
run summary counts them per step. No Textual, no torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from .extract import parse_number
from .locate import last_number, numbers

# Kinds in the order they are shown, with their labels.
ERROR_KINDS: dict[str, str] = {
    "no_answer_tag": "no answer tag",
    "not_a_number": "answer not a number",
    "wrong_number": "wrong number",
    "cut_off": "cut off before the answer",
    "right_number_wrong_format": "right number, wrong format",
}


def _same_number(s: str | None, gold: Any) -> bool:
    a = parse_number(s)
    return a is not None and gold is not None and a == gold


def classify_error(
    text: str | None, extracted: str | None, gold: str | None, correct: bool, truncated: bool = False
) -> str | None:
    """The kind of a wrong answer (a key of ERROR_KINDS), or None for a correct one.

    - cut_off: the completion hit the length limit before giving a readable answer;
    - no_answer_tag: no answer could be extracted (no <answer> tag / nothing after </think>);
    - right_number_wrong_format: the gold number is there but not as the answer the grader reads
      (the last number of a completion without an answer tag, or a number inside a wordy answer
      such as "Eli has 17");
    - not_a_number: the answer is not a number although the gold is one;
    - wrong_number: a number (or, for a non-numeric gold, an answer) that is not the gold.
    """
    if correct:
        return None
    gold_n = parse_number(gold)
    if extracted is None or not str(extracted).strip():
        if truncated:
            return "cut_off"
        if _same_number(last_number(text or ""), gold_n):
            return "right_number_wrong_format"
        return "no_answer_tag"
    if gold_n is None:
        return "wrong_number"  # a symbolic gold (MATH): the answer is read, and wrong
    answer_n = parse_number(extracted)
    if answer_n is not None:
        # equal to the gold yet recorded wrong: judged by stricter rules when it was recorded (an older run)
        return "right_number_wrong_format" if answer_n == gold_n else "wrong_number"
    if any(_same_number(n, gold_n) for n in numbers(str(extracted))):
        return "right_number_wrong_format"
    return "cut_off" if truncated else "not_a_number"


def error_counts(groups: Iterable[dict[str, Any]]) -> dict[int, Counter]:
    """Per step: how many wrong completions of each kind, from rollout group records."""
    # The latest record of a (step, group) wins: a resumed run records its redone steps again.
    latest = {(g["step"], g.get("group")): g for g in groups if isinstance(g.get("step"), int)}
    out: dict[int, Counter] = {}
    for (step, _), g in sorted(latest.items(), key=lambda kv: kv[0][0]):
        counts = out.setdefault(step, Counter())
        for c in g.get("completions") or []:
            kind = classify_error(
                c.get("text"), c.get("extracted"), g.get("gold"), bool(c.get("correct")), bool(c.get("truncated"))
            )
            if kind is not None:
                counts[kind] += 1
    return out
