"""Reward throughput: score N completions with the GSM8K reward stack, print completions/s.

    .venv/bin/python bench/rewards.py                 # 10,000 completions, the five-reward recipe
    .venv/bin/python bench/rewards.py --stack think   # correctness_think + think_format + length_penalty
    .venv/bin/python bench/rewards.py --stack math    # math_equivalence on MATH-500 style answers

Completions are built from GSM8K train solutions in the mix a training run
sees (well formatted right and wrong answers, sloppy formats, no tags, trailing
text, thousands separators), scored in groups of --group like TRL does, each
reward wrapped in GuardedReward as the engine wraps it, plus the
extract_answer/is_correct judgment the engine records for every completion.
Without ../shared/data it falls back to synthetic arithmetic problems.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_tui.engine.rewards import (  # noqa: E402
    GSM8K_RECIPE,
    THINK_RECIPE,
    extract_answer,
    gold_from_solution,
    guard,
    is_correct,
    mathverify,
    resolve_reward,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STACKS = {
    "gsm8k": GSM8K_RECIPE,
    "gsm8k+normalized": (*GSM8K_RECIPE, "correctness_normalized"),
    "think": THINK_RECIPE,
    "math": ("math_equivalence", "think_format"),
}


def gsm8k_items() -> list[tuple[str, str]]:
    path = DATA / "gsm8k" / "train.jsonl"
    if not path.is_file():
        rng = random.Random(0)
        return [
            (f"{a} + {b} = {a + b}", str(a + b))
            for a, b in ((rng.randrange(999), rng.randrange(999)) for _ in range(2000))
        ]
    items = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            items.append((row["answer"].rsplit("####", 1)[0].strip(), gold_from_solution(row["answer"], "gsm8k")))
    return items


def math_items() -> list[tuple[str, str]]:
    path = DATA / "math500" / "test.jsonl"
    if not path.is_file():
        return [("half", "\\frac{1}{2}"), ("root", "\\sqrt{2}"), ("pi", "\\frac{\\pi}{3}")]
    with path.open(encoding="utf-8") as f:
        return [(row["solution"][:400], row["answer"]) for row in map(json.loads, f)]


def make_completion(rng: random.Random, reasoning: str, gold: str, stack: str) -> str:
    wrong = str(rng.randint(0, 999))
    answer = gold if rng.random() < 0.4 else wrong
    if stack in ("think", "math"):
        kind = rng.randrange(4)
        if kind == 0:
            return f"<think>\n{reasoning}\n</think>\nThe answer is \\boxed{{{answer}}}."
        if kind == 1:
            return f"<think>\n{reasoning}\n</think>\n{answer}"
        if kind == 2:
            return f"<think>\n{reasoning}"  # truncated while thinking
        return f"{reasoning}\nSo the answer is {answer}."
    kind = rng.randrange(6)
    if kind == 0:
        return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"
    if kind == 1:
        return f"<reasoning>{reasoning}</reasoning> <answer>{answer}</answer>"
    if kind == 2:
        return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n${answer}.00\n</answer>\nHope this helps!"
    if kind == 3:
        return f"{reasoning}\nThe answer is {answer}."
    if kind == 4:
        return (
            f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{int(answer):,} dollars\n</answer>\n"
            if answer.lstrip("-").isdigit()
            else answer
        )
    return f"<reasoning>\n{reasoning[: len(reasoning) // 2]}"  # truncated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="completions to score (default 10,000)")
    parser.add_argument("--group", type=int, default=16, help="completions per reward call (GRPO group, default 16)")
    parser.add_argument("--stack", choices=sorted(STACKS), default="gsm8k")
    parser.add_argument("--no-judge", action="store_true", help="skip the extract_answer/is_correct judgment")
    args = parser.parse_args(argv)

    rng = random.Random(1234)
    items = math_items() if args.stack == "math" else gsm8k_items()
    fmt = "think" if args.stack in ("think", "math") else "reasoning"
    picks = [items[rng.randrange(len(items))] for _ in range(args.n)]
    texts = [make_completion(rng, r, g, args.stack) for r, g in picks]
    golds = [g for _, g in picks]
    ids = [[0] * max(1, len(t) // 4) for t in texts]  # token ids as TRL passes them (length is what counts)
    rewards = [guard(resolve_reward(name), name, timeout_s=5.0) for name in STACKS[args.stack]]
    if args.stack in ("think", "math"):
        mathverify.warm_up()

    t0 = time.perf_counter()
    total = 0.0
    for start in range(0, args.n, args.group):
        batch, gold, cids = (
            texts[start : start + args.group],
            golds[start : start + args.group],
            ids[start : start + args.group],
        )
        prompts = ["q"] * len(batch)
        for fn in rewards:
            total += sum(fn(prompts, batch, gold, completion_ids=cids, prompt_format=fmt))
        if not args.no_judge:
            for text, g in zip(batch, gold):
                is_correct(extract_answer(text, fmt), g)
    elapsed = time.perf_counter() - t0
    failures = sum(f["count"] for fn in rewards for f in fn.drain_failures())
    rate = args.n / elapsed
    print(
        f"{args.n:,} completions, stack {args.stack} ({', '.join(STACKS[args.stack])})"
        f"{'' if args.no_judge else ' + judgment'}: {elapsed:.2f}s, {rate:,.0f} completions/s"
        f" (mean total reward {total / args.n:.3f}, failures {failures})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
