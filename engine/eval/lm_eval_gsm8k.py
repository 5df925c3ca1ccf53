"""`grpo-tui eval --protocol lm-eval-gsm8k`: lm-evaluation-harness's gsm8k task, reproduced.

The numbers published for GSM8K (the Open LLM Leaderboard, model cards, the
two-stage 7B write-up) come from lm-evaluation-harness's `gsm8k` task
(lm_eval 0.4.x, tasks/gsm8k/gsm8k.yaml), not from grpo-tui's own protocol
(zero-shot, in the training format). This module does what that task does:

- prompt: 5 worked examples drawn from the train split, each
  "Question: {question}\\nAnswer: {answer}" (the full GSM8K solution with its
  "#### N" line), joined by blank lines, then "Question: {question}\\nAnswer:".
  The examples are drawn per test item, in test order, by `random.Random(1234)`
  (`rnd.sample(train_docs, 5)`), as lm-eval's default sampler does with its
  default fewshot seed; no chat template (lm-eval's default);
- generation: greedy, at most 256 new tokens, cut at "Question:", "</s>",
  "<|im_end|>" (and the tokenizer's end of sequence);
- scoring: two filters, "strict-match" (the first `#### N`) and
  "flexible-extract" (the last number-like run), each compared by exact match
  after removing ",", "$", everything up to "#### " and a final "." from both
  the extracted answer and the reference, case-insensitively.

tests/test_lm_eval_protocol.py checks the per-item verdicts against lm-eval's
own RegexFilter and exact_match code read from its released wheel.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from typing import Any

NUM_FEWSHOT = 5
FEWSHOT_SEED = 1234
MAX_GEN_TOKS = 256
UNTIL = ("Question:", "</s>", "<|im_end|>")
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
REGEXES_TO_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")
FALLBACK = "[invalid]"
FILTERS = {"strict-match": (re.compile(STRICT_PATTERN), 0), "flexible-extract": (re.compile(FLEXIBLE_PATTERN), -1)}


def doc_to_text(doc: dict[str, Any]) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def contexts(
    test_docs: list[dict[str, Any]],
    train_docs: list[dict[str, Any]],
    num_fewshot: int = NUM_FEWSHOT,
    seed: int = FEWSHOT_SEED,
) -> list[str]:
    """The prompt of every test item, few-shot examples drawn as lm-eval's default sampler draws them."""
    rnd = random.Random(seed)
    out = []
    for doc in test_docs:
        shots = [x for x in rnd.sample(train_docs, num_fewshot) if x != doc][:num_fewshot]
        out.append(
            "".join(doc_to_text(s) + TARGET_DELIMITER + s["answer"] + FEWSHOT_DELIMITER for s in shots)
            + doc_to_text(doc)
        )
    return out


def cut_at_stop(text: str, until: Iterable[str] = UNTIL) -> str:
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


def regex_extract(response: str, name: str) -> str:
    """lm-eval's RegexFilter with take_first: the selected match (first non-empty group of it), or '[invalid]'."""
    regex, group_select = FILTERS[name]
    found = regex.findall(response)
    if not found:
        return FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), FALLBACK)
    return match.strip()


def _normalize(text: str) -> str:
    for pattern in REGEXES_TO_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def exact_match(prediction: str, reference: str) -> bool:
    """lm-eval's exact_match with the gsm8k task's settings (ignore_case, regexes_to_ignore)."""
    return _normalize(prediction) == _normalize(reference)


def score(response: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Both filters' extraction and verdict for one completion (already cut at the stop sequences)."""
    strict, flexible = regex_extract(response, "strict-match"), regex_extract(response, "flexible-extract")
    return {
        "extracted_strict": strict,
        "correct": exact_match(strict, doc["answer"]),
        "extracted_flex": flexible,
        "correct_flex": exact_match(flexible, doc["answer"]),
    }


def stderr_of_mean(hits: list[bool]) -> float | None:
    """lm-eval's stderr for a mean (sample standard deviation over sqrt(n))."""
    n = len(hits)
    if n < 2:
        return None
    p = sum(hits) / n
    var = sum((h - p) ** 2 for h in hits) / (n - 1)
    return math.sqrt(var / n)


def run(
    model: Any,
    tokenizer: Any,
    test_docs: list[dict[str, Any]],
    train_docs: list[dict[str, Any]],
    *,
    batch_size: int,
    max_new_tokens: int = MAX_GEN_TOKS,
    progress: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate and score every test item; returns (rows, numbers) in the shape of grpo-tui's eval output."""
    from grpo_tui.engine.eval.generation import generate
    from grpo_tui.engine.eval.stats import wilson

    prompts = contexts(test_docs, train_docs)
    eos = tokenizer.eos_token or ""
    completions = generate(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, on_batch=progress
    )
    rows = []
    for i, (doc, outs) in enumerate(zip(test_docs, completions)):
        text = cut_at_stop(outs[0].text, (*UNTIL, eos))
        rows.append(
            {
                "id": str(doc.get("id", f"gsm8k-{i}")),
                "question": doc["question"],
                "gold": doc["answer"],
                "completion": text,
                "tokens": outs[0].tokens,
                **score(text, doc),
            }
        )
    numbers: dict[str, Any] = {
        "protocol": "lm-eval-gsm8k",
        "n": len(rows),
        "num_fewshot": NUM_FEWSHOT,
        "fewshot_seed": FEWSHOT_SEED,
    }
    for key, label in (("correct", "strict-match"), ("correct_flex", "flexible-extract")):
        hits = [r[key] for r in rows]
        k = sum(hits)
        lo, hi = wilson(k, len(hits))
        numbers[label] = {
            "exact_match": k / len(hits) if hits else None,
            "stderr": stderr_of_mean(hits),
            "correct": k,
            "ci_low": lo,
            "ci_high": hi,
        }
    return rows, numbers


def table_markdown(model: str, numbers: dict[str, Any]) -> str:
    """The results table as lm-eval prints it."""
    lines = [
        "|Tasks|Version|     Filter     |n-shot|  Metric   |   |Value |   |Stderr|",
        "|-----|------:|----------------|-----:|-----------|---|-----:|---|-----:|",
    ]
    for label in ("flexible-extract", "strict-match"):
        m = numbers[label]
        err = "N/A" if m["stderr"] is None else f"{m['stderr']:.4f}"
        lines.append(
            f"|gsm8k|      3|{label:<16}|{numbers['num_fewshot']:>6}|exact_match|↑  |{m['exact_match']:.4f}|±  |{err}|"
        )
    return f"{model}\n" + "\n".join(lines)
