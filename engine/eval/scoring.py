"""Scoring one answer strictly (the trained format) and flexibly (the last number or \\boxed{}),
majority votes over samples, and the summary of a scored run."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from grpo_tui.engine.eval.data import EvalItem
from grpo_tui.engine.eval.stats import mean_ci, pass_at_k, wilson
from grpo_tui.engine.rewards import is_correct, last_boxed, last_number, parse_number
from grpo_tui.engine.rewards.answer_format import answer_format


def flexible_answer(text: str, math_style: bool) -> str | None:
    """What a lenient benchmark parser takes as the answer: the last number; MATH-style: last \\boxed{} first."""
    if math_style:
        boxed = last_boxed(text or "")
        if boxed is not None:
            return boxed
    return last_number(text or "")


def vote_key(answer: str | None) -> str | None:
    """Answers that mean the same number vote together ("18", "18.00", "$18")."""
    if answer is None:
        return None
    num = parse_number(answer)
    if num is not None:
        return f"#{num}"
    key = re.sub(r"\s+", "", answer)
    return key or None


def majority(answers: list[str | None]) -> str | None:
    """The most common answer (ties: the one given first); None if no sample gave one."""
    keys = [vote_key(a) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    best = max(counts.values())
    for a, k in zip(answers, keys):
        if k is not None and counts[k] == best:
            return a
    return None


@dataclass
class Completion:
    text: str
    tokens: int
    truncated: bool


def score_completion(c: Completion, gold: str, fmt: str, math_style: bool) -> dict[str, Any]:
    """Strict: the answer as the prompt format's extractor reads it (what training rewards); flexible: as a lenient
    benchmark parser reads it."""
    strict = answer_format(fmt).extract(c.text)
    flex = flexible_answer(c.text, math_style)
    return {
        "completion": c.text,
        "extracted": strict,
        "correct": bool(is_correct(strict, gold)),
        "extracted_flex": flex,
        "correct_flex": bool(is_correct(flex, gold)),
        "tokens": c.tokens,
        "truncated": c.truncated,
    }


def score_items(
    items: list[EvalItem],
    greedy: list[Completion] | None,
    samples: list[list[Completion]] | None,
    fmt: str,
    math_style: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-item rows and the aggregate numbers (no metadata)."""
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        row: dict[str, Any] = {"id": item.id, "question": item.question, "gold": item.gold}
        if greedy is not None:
            row.update(score_completion(greedy[i], item.gold, fmt, math_style))
        if samples is not None:
            scored = [score_completion(c, item.gold, fmt, math_style) for c in samples[i]]
            maj = majority([s["extracted"] for s in scored])
            maj_flex = majority([s["extracted_flex"] for s in scored])
            row["samples"] = scored
            row["n_correct"] = sum(s["correct"] for s in scored)
            row["n_correct_flex"] = sum(s["correct_flex"] for s in scored)
            row["majority"], row["majority_correct"] = maj, bool(is_correct(maj, item.gold))
            row["majority_flex"], row["majority_flex_correct"] = maj_flex, bool(is_correct(maj_flex, item.gold))
        rows.append(row)
    return rows, aggregate(rows, greedy is not None, len(samples[0]) if samples else 0)


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"correct": k, "n": n, "accuracy": k / n if n else 0.0, "ci95": [lo, hi]}


def aggregate(rows: list[dict[str, Any]], has_greedy: bool, k: int) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    if has_greedy and n:
        out["greedy"] = {
            "strict": _rate(sum(r["correct"] for r in rows), n),
            "flexible": _rate(sum(r["correct_flex"] for r in rows), n),
            "format_rate": sum(r["extracted"] is not None for r in rows) / n,
            "mean_tokens": sum(r["tokens"] for r in rows) / n,
            "truncated_frac": sum(r["truncated"] for r in rows) / n,
        }
    if k and n:
        sampled: dict[str, Any] = {"k": k}
        for mode, col, maj in (
            ("strict", "n_correct", "majority_correct"),
            ("flexible", "n_correct_flex", "majority_flex_correct"),
        ):
            p1 = [r[col] / k for r in rows]
            pk = [pass_at_k(k, r[col], k) for r in rows]
            sampled[mode] = {
                "pass@1": sum(p1) / n,
                "pass@1_ci95": list(mean_ci(p1)),
                f"pass@{k}": sum(pk) / n,
                f"pass@{k}_ci95": list(wilson(sum(1 for x in pk if x > 0), n)),
                f"maj@{k}": _rate(sum(r[maj] for r in rows), n),
            }
        sampled["frac_all_same"] = sum(r["n_correct"] in (0, k) for r in rows) / n  # groups GRPO can't learn from
        out["sampled"] = sampled
    return out
