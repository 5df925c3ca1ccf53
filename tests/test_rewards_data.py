"""The rewards on real data: all GSM8K train rows and all of MATH-500.

The data lives outside the repo, at ../shared/data from the repo root.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from grpo_tui.engine.rewards import (
    GSM8K_RECIPE,
    REWARDS,
    VALUES,
    gold_from_solution,
    mathverify,
    multiple_choice_letter,
)

DATA = Path(__file__).parents[2] / "shared" / "data"
GSM8K_TRAIN = DATA / "gsm8k" / "train.jsonl"
MATH500 = DATA / "math500" / "test.jsonl"


def load(path: Path) -> list[dict]:
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared data directory (../shared/data from the repo root) is absent")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def strict_completion(reasoning: str, answer: str) -> str:
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"


def wrong_number(gold: str) -> str:
    return str(int(gold) + 1)


@pytest.fixture(scope="module")
def gsm8k_rows():
    rows = load(GSM8K_TRAIN)
    assert len(rows) == 7473
    return rows


def test_gsm8k_gold_completion_gets_every_reward(gsm8k_rows):
    golds = [gold_from_solution(r["answer"], "gsm8k") for r in gsm8k_rows]
    assert all(g is not None and re.fullmatch(r"-?\d+", g) for g in golds)  # thousands separators removed
    texts = [strict_completion(r["answer"].rsplit("####", 1)[0].strip(), g) for r, g in zip(gsm8k_rows, golds)]
    prompts = [r["question"] for r in gsm8k_rows]
    for name in (*GSM8K_RECIPE, "correctness_normalized"):
        scores = REWARDS[name](prompts, texts, golds)
        misses = [i for i, s in enumerate(scores) if s != VALUES[name]]
        assert not misses, (
            f"{name}: {len(misses)} rows below {VALUES[name]}, e.g. row {misses[0]}: {texts[misses[0]]!r}"
        )


def test_gsm8k_changed_number_gets_zero_correctness(gsm8k_rows):
    golds = [gold_from_solution(r["answer"], "gsm8k") for r in gsm8k_rows]
    texts = [
        strict_completion(r["answer"].rsplit("####", 1)[0].strip(), wrong_number(g)) for r, g in zip(gsm8k_rows, golds)
    ]
    for name in ("correctness", "correctness_normalized"):
        assert sum(REWARDS[name](None, texts, golds)) == 0.0, name
    # formatting is still perfect, so the format rewards do not move
    assert set(REWARDS["strict_format"](None, texts, golds)) == {0.5}


def test_gsm8k_gold_with_separators_matches_the_answer_field(gsm8k_rows):
    with_commas = [r for r in gsm8k_rows if "," in r["answer"].rsplit("####", 1)[1]]
    assert len(with_commas) == 79
    for r in with_commas:
        raw = r["answer"].rsplit("####", 1)[1].strip()
        assert gold_from_solution(r["answer"], "gsm8k") == raw.replace(",", "")


@pytest.fixture(scope="module")
def math500_rows():
    rows = load(MATH500)
    assert len(rows) == 500
    return rows


def perturb(gold: str) -> str:
    """A wrong answer: next option letter, else the first integer plus one, else '+ 1'."""
    letter = multiple_choice_letter(gold)
    if letter:
        return gold.replace(letter, "ABCDEA"["ABCDE".index(letter) + 1])
    m = re.search(r"\d+", gold)
    if m:
        return gold[: m.start()] + str(int(m.group()) + 1) + gold[m.end() :]
    return gold + " + 1"


def test_math500_boxed_gold_from_solution_matches_answer_field(math500_rows):
    assert all(gold_from_solution(r["solution"], "boxed") == r["answer"] for r in math500_rows)


def test_math500_boxed_gold_is_correct_and_wrong_value_is_wrong(math500_rows):
    golds = [r["answer"] for r in math500_rows]
    right = REWARDS["math_equivalence"](None, [f"The answer is $\\boxed{{{g}}}$." for g in golds], golds)
    accuracy = sum(right) / len(golds)
    assert accuracy >= 0.99, [g for g, s in zip(golds, right) if s != 1.0]
    wrong = REWARDS["math_equivalence"](None, [f"So \\boxed{{{perturb(g)}}}" for g in golds], golds)
    assert [g for g, s in zip(golds, wrong) if s != 0.0] == []


def test_math500_rewritten_gold_is_still_correct(math500_rows):
    """\\dfrac for \\frac, no \\left/\\right, no spaces: equivalence, not string equality, decides."""
    golds = [r["answer"] for r in math500_rows]

    def rewrite(g: str) -> str:
        return g.replace("\\frac", "\\dfrac").replace("\\left", "").replace("\\right", "").replace(" ", "")

    changed = [g for g in golds if rewrite(g) != g]
    assert len(changed) > 100
    scores = REWARDS["math_equivalence"](None, [f"\\boxed{{{rewrite(g)}}}" for g in changed], changed)
    assert sum(scores) / len(changed) >= 0.99, [g for g, s in zip(changed, scores) if s != 1.0]


def test_math500_math_verify_itself_accepts_every_gold(math500_rows):
    """The same check without the string shortcut: math-verify parses and matches each gold with itself."""
    fails = []
    for r in math500_rows:
        try:
            if not mathverify.equivalent(r["answer"], r["answer"], timeout_s=10):
                fails.append(r["answer"])
        except mathverify.MathVerifyError as e:
            fails.append(f"{r['answer']} ({e})")
    assert len(fails) <= 5, fails
