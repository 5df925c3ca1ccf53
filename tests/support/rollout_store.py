"""Rollout stores written through the real writer: deterministic groups that get more right as steps go."""

from __future__ import annotations

from pathlib import Path

from grpo_tui.rundir.rollouts import CompletionRecord, RolloutWriter

PROMPTS = ["What is 2+3?", "Tom has 4 apples and eats 1. How many are left?", "What is 10-7?"]
GOLDS = ["5", "3", "3"]


def completion(
    text: str, answer: str | None, gold: str, tokens: int = 20, truncated: bool = False, fmt: float = 0.5
) -> dict:
    correct = answer == gold
    return CompletionRecord(
        text=text,
        extracted=answer,
        correct=correct,
        rewards={"correctness": 2.0 if correct else 0.0, "format": fmt},
        total=(2.0 if correct else 0.0) + fmt,
        advantage=0.0,
        tokens=tokens,
        truncated=truncated,
    ).to_dict()


def group_for(step: int, g: int, gens: int = 4) -> tuple[str, str, list[dict]]:
    """Deterministic groups: prompt g % 3; completion i answers right when i < step (more right as steps go),
    group 2 always scores all-equal (zero std), the last completion of group 1 is truncated."""
    prompt, gold = PROMPTS[g % 3], GOLDS[g % 3]
    comps = []
    for i in range(gens):
        if g == 2:
            comps.append(completion(f"<reasoning>I guess</reasoning><answer>{gold}</answer> s{step}", gold, gold))
            continue
        right = i < step
        answer = gold if right else str(100 + i)
        truncated = g == 1 and i == gens - 1
        text = f"<reasoning>step {step} try {i}: thinking about it</reasoning>" + (
            "" if truncated else f"<answer>{answer}</answer>"
        )
        comps.append(completion(text, None if truncated else answer, gold, tokens=10 * (i + 1), truncated=truncated))
    mean = sum(c["total"] for c in comps) / len(comps)
    for c in comps:
        c["advantage"] = c["total"] - mean
    return prompt, gold, comps


def write_run(
    run_dir: Path,
    steps: int = 4,
    groups: int = 3,
    gens: int = 4,
    segment_steps: int = 2,
    close: bool = True,
    start: int = 1,
) -> RolloutWriter:
    """A run directory whose rollouts were written through the real writer, one flush per step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    w = RolloutWriter(run_dir / "rollouts.jsonl", segment_steps=segment_steps)
    for step in range(start, start + steps):
        for g in range(groups):
            prompt, gold, comps = group_for(step, g, gens)
            w.write_group(step, g, prompt, gold, comps)
        w.flush()
    if close:
        w.close()
    return w
