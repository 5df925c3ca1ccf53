"""Table-driven tests of the built-in rewards, extraction, judgment and resolve_reward."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from grpo_tui.engine.rewards import (
    GSM8K_RECIPE,
    REWARDS,
    VALUES,
    RewardSpecError,
    count_xml,
    extract_answer,
    gold_from_solution,
    is_correct,
    last_boxed,
    parse_number,
    resolve_reward,
    reward_options,
)

STRICT = "<reasoning>\nHe had 3.\nThen 4 more.\n</reasoning>\n<answer>\n7\n</answer>\n"


def score(name: str, text: str, gold: str = "7", **kwargs) -> float:
    return REWARDS[name](["q"], [text], [gold], **kwargs)[0]


# ------------------------------------------------------------ the five (recipe)


def test_recipe_values_on_a_perfect_completion():
    assert {n: score(n, STRICT) for n in GSM8K_RECIPE} == {
        "xmlcount": 0.5,
        "soft_format": 0.5,
        "strict_format": 0.5,
        "int_answer": 0.5,
        "correctness": 2.0,
    }
    assert all(VALUES[n] == score(n, STRICT) for n in GSM8K_RECIPE)


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        (STRICT, "7", 2.0),
        (STRICT, "8", 0.0),
        ("<answer> 7 </answer>", "7", 2.0),  # stripped
        ("<answer>\n7", "7", 2.0),  # unclosed (truncated) answer: to the end, as the original
        ("<answer>\n7.0\n</answer>", "7", 0.0),  # exact: 7.0 is not 7 (correctness_normalized accepts it)
        ("<answer>1</answer> then <answer>7</answer>", "7", 2.0),  # the last tag counts
        ("7", "7", 0.0),  # no <answer> tag (the original's split gave 2.0)
        ("", "7", 0.0),
    ],
)
def test_correctness(text, gold, expected):
    assert score("correctness", text, gold) == expected


@pytest.mark.parametrize(
    "inner, expected",
    [("7", 0.5), ("-7", 0.5), ("007", 0.5), ("7.0", 0.0), ("7 apples", 0.0), ("1,000", 0.0), ("²", 0.0), ("", 0.0)],
)
def test_int_answer(inner, expected):
    assert score("int_answer", f"<reasoning>\nx\n</reasoning>\n<answer>\n{inner}\n</answer>\n") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (STRICT, 0.5),
        ("<reasoning>\none line\n</reasoning>\n<answer>\n7\n</answer>\n", 0.5),
        (STRICT + "\n", 0.5),  # the original's `$` allowed one extra final newline
        (STRICT.rstrip("\n"), 0.0),  # needs the final newline (option final_newline=False drops that)
        (" " + STRICT, 0.0),
        (STRICT + "extra", 0.0),
        ("<reasoning>x</reasoning>\n<answer>\n7\n</answer>\n", 0.0),
        ("<reasoning>\nx\n</reasoning><answer>\n7\n</answer>\n", 0.0),
        ("<reasoning>\nx\n</reasoning>\n<answer>\n7\n</answer>\n<answer>\n8\n</answer>\n", 0.0),  # no tag in a block
        ("<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n", 0.5),  # empty blocks still match the regex
    ],
)
def test_strict_format(text, expected):
    assert score("strict_format", text) == expected


def test_strict_format_final_newline_option():
    fn = resolve_reward("strict_format", {"final_newline": False})
    assert fn(None, [STRICT.rstrip("\n"), STRICT], None) == [0.5, 0.5]


@pytest.mark.parametrize(
    "text, expected",
    [
        (STRICT, 0.5),
        ("<reasoning>a\nb</reasoning> <answer>7</answer>", 0.5),  # multi-line needs DOTALL (the original missed it)
        ("<reasoning>a</reasoning><answer>7</answer> trailing text", 0.5),
        ("\n  <reasoning>a</reasoning>\n\n<answer>7</answer>", 0.5),  # leading whitespace allowed here
        ("intro <reasoning>a</reasoning><answer>7</answer>", 0.0),
        ("<answer>7</answer><reasoning>a</reasoning>", 0.0),
        ("<reasoning>a</reasoning> text <answer>7</answer>", 0.0),
        ("<reasoning>a</reasoning><answer>7", 0.0),
    ],
)
def test_soft_format(text, expected):
    assert score("soft_format", text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (STRICT, 0.5),
        (STRICT.rstrip("\n"), 0.5),  # the original gave 0.501 minus 0.001 x the whole length here
        (STRICT + "abc", 0.5 - 0.003 - 0.003),  # both closing-tag checks charge the 3 trailing characters
        ("<reasoning>\nx\n</reasoning>\n", 0.25),
        ("<reasoning>\nx", 0.125),
        ("no tags at all", 0.0),
        ("<reasoning>\n<reasoning>\nx\n</reasoning>\n<answer>\n7\n</answer>\n", 0.375),  # duplicate tag loses its 0.125
    ],
)
def test_xmlcount(text, expected):
    assert score("xmlcount", text) == pytest.approx(expected)
    assert count_xml(text) == pytest.approx(expected)


# --------------------------------------------------------- normalized / math


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("1,000", "1000", True),
        ("1000", "1,000", True),
        ("$18", "18", True),
        ("\\$18", "18", True),
        ("18.00", "18", True),
        ("18 dollars", "18", True),
        ("18.", "18", True),
        ("$1,234.50", "1234.5", True),
        ("18%", "18", True),
        ("The answer is 18", "18", True),
        ("x = 18", "18", True),
        ("-3", "-3", True),
        ("\u22123", "-3", True),
        ("+3", "3", True),
        (".5", "0.5", True),
        ("1/2", "0.5", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{36}{2}", "18", True),
        ("\\text{18 dollars}", "18", True),
        ("\\boxed{18}", "18", True),
        ("17", "18", False),
        ("-18", "18", False),
        ("18.01", "18", False),
        ("1,00", "100", False),
        ("2 hours 30 minutes", "2", False),
        # units in any language, sentences with or without a full stop, full-width digits
        ("175本", "175", True),
        ("175 本", "175", True),
        ("答案是175本。", "175", True),
        ("１７５", "175", True),
        ("１７５个", "175", True),
        ("Eli has 17 stickers", "17", True),
        ("Eli has 17 stickers.", "17", True),
        ("Eli has 16 stickers", "17", False),
        ("175本", "176", False),
        ("9 (apples)", "9", True),
        ("9", "9 (apples)", True),
        ("145", "145.0", True),
        ("5 cm²", "5", True),
        ("3\\pi", "3", False),
        ("", "18", False),
        (None, "18", False),
        ("18", None, False),
    ],
)
def test_is_correct_numeric(answer, gold, expected):
    assert is_correct(answer, gold) is expected


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("1/2", "0.5", True),
        ("\\frac{1}{2}", "1/2", True),
        ("\\sqrt{4}", "2", True),
        ("2", "\\sqrt{4}", True),
        ("2/4", "0.5", True),  # equivalence, not simplest form (see docs/rewards.md)
        ("\\frac{\\pi}{2}", "\\pi/2", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("6-5i", "6 - 5i", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("\\sqrt{5}", "2", False),
        ("\\frac{1}{3}", "0.5", False),
        ("52_8", "52_8", True),
        ("52_9", "52_8", False),  # math-verify ignores base subscripts; we do not
        ("4210_5", "4210_{5}", True),
        ("\\text{Evelyn}", "\\text{Evelyn}", True),
        ("\\text{Navin}", "\\text{Evelyn}", False),
    ],
)
def test_is_correct_math(answer, gold, expected):
    assert is_correct(answer, gold) is expected


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("B", "B", True),
        ("(B)", "B", True),
        ("B.", "B", True),
        ("\\text{(B)}", "B", True),
        ("\\boxed{B}", "\\text{(B)}", True),
        ("b", "B", False),
        ("C", "B", False),
        ("B) 42", "B", False),
        ("The answer is B", "B", False),
        ("2", "B", False),
    ],
)
def test_multiple_choice_is_strict(answer, gold, expected):
    assert is_correct(answer, gold) is expected


def test_correctness_normalized_values():
    golds = ["1000", "18", "18", "18", "18", "18"]
    texts = [f"<answer>{a}</answer>" for a in ["1,000", "$18", "18.00", "18 dollars", "18.", "19"]]
    assert REWARDS["correctness_normalized"](None, texts, golds) == [2.0] * 5 + [0.0]


def test_correctness_normalized_follows_prompt_format():
    text = "<think>so 18</think> The answer is \\boxed{18}."
    assert REWARDS["correctness_normalized"](None, [text], ["18"], prompt_format="think") == [2.0]
    assert REWARDS["correctness_normalized"](None, [text], ["18"]) == [0.0]  # no <answer> tag


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("so \\boxed{1/2}", "0.5", 1.0),
        ("\\boxed{\\frac{1}{2}}", "1/2", 1.0),
        ("\\boxed{\\sqrt{4}}", "2", 1.0),
        ("first \\boxed{3} then \\boxed{2}", "2", 1.0),  # the last box counts
        ("first \\boxed{2} then \\boxed{3}", "2", 0.0),
        ("0.5", "0.5", 0.0),  # no box, no answer
        ("\\boxed{B}", "B", 1.0),
        ("\\boxed{C}", "B", 0.0),
        ("\\boxed{\\frac{1}{2}", "0.5", 0.0),  # unclosed box
    ],
)
def test_math_equivalence(text, gold, expected):
    assert score("math_equivalence", text, gold) == expected


# ------------------------------------------------------------- think recipe


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>\nsteps\n</think>\nThe answer is 7.", 0.5),
        ("  <think>steps</think>7", 0.5),
        ("<think></think>7", 0.0),  # empty thought
        ("<think>steps</think>   ", 0.0),  # no answer after
        ("steps</think>7", 0.0),  # missing <think> (allowed with require_open_tag=false)
        ("<think>a</think>b<think>c</think>d", 0.0),
        ("<think>a<think>b</think>7", 0.0),
        ("intro <think>a</think>7", 0.0),
        ("no tags", 0.0),
    ],
)
def test_think_format(text, expected):
    assert score("think_format", text) == expected


def test_think_format_without_open_tag_option():
    fn = resolve_reward("think_format", {"require_open_tag": False})
    assert fn(None, ["steps</think>7", "<think>steps</think>7", "</think>7"], None) == [0.5, 0.5, 0.0]


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>1+1 is 3? no</think> \\boxed{2}", "2", 1.0),
        ("<think>x</think> The answer is 2.", "2", 1.0),
        ("<think>x</think> <answer>1/2</answer>", "0.5", 1.0),
        ("<think>the answer is 2", "2", 0.0),  # truncated while thinking
        ("<think>2</think> I think 3", "2", 0.0),
        ("<think>x</think> \\boxed{\\frac{1}{2}}", "\\frac{2}{4}", 1.0),
    ],
)
def test_correctness_think(text, gold, expected):
    assert score("correctness_think", text, gold) == expected


@pytest.mark.parametrize(
    "n_tokens, expected",
    [
        (0, -0.1),
        (200, -0.1),
        (350, -0.05),
        (500, 0.0),
        (650, 0.0),
        (800, 0.0),
        (950, -0.05),
        (1100, -0.1),
        (5000, -0.1),
    ],
)
def test_length_penalty_default_window(n_tokens, expected):
    fn = REWARDS["length_penalty"]
    by_ids = fn(None, ["ignored"], None, completion_ids=[[1] * n_tokens])[0]
    by_words = fn(None, [" ".join(["w"] * n_tokens)], None)[0]
    assert by_ids == pytest.approx(expected) and by_words == pytest.approx(expected)


def test_length_penalty_options_and_validation():
    fn = resolve_reward("length_penalty", {"min_tokens": 0, "max_tokens": 10, "ramp_tokens": 10, "penalty": -1.0})
    assert fn(None, ["a " * 5, "a " * 15, "a " * 40], None) == pytest.approx([0.0, -0.5, -1.0])
    with pytest.raises(RewardSpecError, match="min_tokens"):
        resolve_reward("length_penalty", {"min_tokens": 900, "max_tokens": 800})
    with pytest.raises(RewardSpecError, match="penalty"):
        resolve_reward("length_penalty", {"penalty": 0.1})


# ----------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, fmt, expected",
    [
        (STRICT, "reasoning", "7"),
        ("<answer>\n 1,000 \n</answer>", "reasoning", "1,000"),
        ("no tag 7", "reasoning", None),
        ("<answer>", "reasoning", ""),
        ("<think>x</think> \\boxed{\\frac{1}{2}} and 3", "think", "\\frac{1}{2}"),
        ("<think>x</think> <answer>5</answer> 6", "think", "5"),
        ("<think>x</think> so 1,000 then 2,500.", "think", "2500"),
        ("<think>x</think> -3.5 is it", "think", "-3.5"),
        ("<think>x</think> 10-3 = 7", "think", "7"),
        ("<think>x</think> pages 1-10", "think", "10"),
        ("<think>x</think> it is (-4)", "think", "-4"),
        ("<think>x</think> it is \u22124", "think", "-4"),
        ("<think>x</think> version 2.5.", "think", "2.5"),
        ("<think>x</think> nothing", "think", None),
        ("<think>\\boxed{4}", "think", None),
        ("x</think><think>y</think> 4", "think", "4"),
    ],
)
def test_extract_answer(text, fmt, expected):
    assert extract_answer(text, fmt) == expected


def test_extract_answer_rejects_unknown_format():
    with pytest.raises(ValueError, match="prompt_format"):
        extract_answer("x", "xml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{5}", "5"),
        ("a \\boxed{\\frac{1}{2}} b", "\\frac{1}{2}"),
        ("\\boxed{1} \\boxed{2}", "2"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{a{b{c}}d}", "a{b{c}}d"),
        ("\\boxed{1} then \\boxed{2", "1"),  # unclosed last box: the previous complete one
        ("\\boxed 5.", "5"),
        ("\\fbox{7}", "7"),
        ("no box", None),
        ("$\\boxed{}$", ""),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "gsm8k", "72"),
        ("...\n#### 1,080", "gsm8k", "1080"),
        ("...\n#### 850,000", "gsm8k", "850000"),
        ("...\n#### -7", "gsm8k", "-7"),
        ("no marker", "gsm8k", None),
        ("So $x=\\boxed{\\frac{14}{3}}$.", "boxed", "\\frac{14}{3}"),
        ("no box", "boxed", None),
        ("  42 \n", "plain", "42"),
        ("9 (apples)", "number", "9"),
        ("145.0", "number", "145"),
        ("-0.50", "number", "-0.5"),
        ("2 hours 30 minutes", "number", None),
        ("   ", "plain", None),
    ],
)
def test_gold_from_solution(text, kind, expected):
    assert gold_from_solution(text, kind) == expected


def test_gold_from_solution_unknown_kind():
    with pytest.raises(ValueError, match="gsm8k"):
        gold_from_solution("x", "math")


@pytest.mark.parametrize("s", ["", "abc", "1 2", "1,00", "--1", "1/0", "\\frac{1}{0}", "$", "."])
def test_parse_number_rejects(s):
    assert parse_number(s) is None


# ------------------------------------------------------------ resolve_reward


def test_every_builtin_resolves_and_handles_an_empty_batch():
    for name in REWARDS:
        fn = resolve_reward(name)
        assert fn(prompts=[], completions=[], answer=[]) == []


def test_unknown_reward_lists_builtins_and_suggests():
    with pytest.raises(RewardSpecError) as e:
        resolve_reward("corectness")
    assert "did you mean 'correctness'" in str(e.value)
    assert all(name in str(e.value) for name in REWARDS)


def test_unknown_option_names_reward_option_and_allowed():
    with pytest.raises(RewardSpecError) as e:
        resolve_reward("length_penalty", {"max_token": 700})
    msg = str(e.value)
    assert "length_penalty" in msg and "max_token" in msg and "max_tokens" in msg and "min_tokens" in msg
    with pytest.raises(RewardSpecError, match="Options it accepts: none"):
        resolve_reward("correctness", {"scale": 2})


def test_weight_key_is_ignored_and_name_kept():
    fn = resolve_reward("length_penalty", {"weight": 3.0, "max_tokens": 900})
    assert fn.__name__ == "length_penalty"
    assert reward_options(REWARDS["length_penalty"])["max_tokens"] == 800


USER_FILE = textwrap.dedent(
    """
    def has_seven(completions, *, bonus=1.0, **kwargs):
        return [bonus if "7" in c[0]["content"] else 0.0 for c in completions]

    def no_kwargs(completions, solution):
        return [0.0 for c in completions]

    NOT_A_FUNCTION = 3
    """
)


def test_user_reward_from_file(tmp_path: Path):
    (tmp_path / "my_rewards.py").write_text(USER_FILE)
    fn = resolve_reward("my_rewards.py:has_seven", base_dir=tmp_path)
    said = [[{"role": "assistant", "content": "7"}], [{"role": "assistant", "content": "8"}]]
    assert fn(prompts=["q", "q"], completions=said, answer=["7", "7"]) == [1.0, 0.0]
    fn = resolve_reward("my_rewards.py:has_seven", {"bonus": 0.25}, base_dir=tmp_path)
    assert fn(prompts=["q"], completions=said[:1], completion_ids=[[1]], trainer_state=None) == [0.25]
    fn = resolve_reward(f"{tmp_path}/my_rewards.py:has_seven")  # absolute path
    assert fn.__name__ == "has_seven"


def test_user_reward_errors(tmp_path: Path):
    (tmp_path / "my_rewards.py").write_text(USER_FILE)
    (tmp_path / "broken.py").write_text("def f(:\n")
    cases = {
        "missing.py:f": ["file not found", "missing.py", str(tmp_path)],
        "my_rewards.py:has_sevn": ["'has_sevn' is not defined", "did you mean 'has_seven'", "no_kwargs"],
        "my_rewards.py:NOT_A_FUNCTION": ["not callable"],
        "my_rewards.py:no_kwargs": ["**kwargs", "def no_kwargs(completions, **kwargs)"],
        "my_rewards.py": ["function_name"],
        "broken.py:f": ["SyntaxError", "broken.py"],
    }
    for spec, needles in cases.items():
        with pytest.raises(RewardSpecError) as e:
            resolve_reward(spec, base_dir=tmp_path)
        for needle in needles:
            assert needle in str(e.value), (spec, str(e.value))
    with pytest.raises(RewardSpecError, match="unknown option 'bonsu'.*bonus"):
        resolve_reward("my_rewards.py:has_seven", {"bonsu": 2}, base_dir=tmp_path)


def test_values_are_finite_floats_for_garbage_inputs():
    garbage = ["", "<answer>", "</answer>" * 3, "<think>" * 4, "\\boxed{", "\\boxed{}}}", "\x00\udcff", "9" * 500]
    for name, fn in REWARDS.items():
        out = fn(["q"] * len(garbage), garbage, ["7"] * len(garbage))
        assert len(out) == len(garbage) and all(isinstance(v, float) and math.isfinite(v) for v in out), name


def test_long_and_adversarial_inputs_stay_fast():
    import time

    cases = [
        "<reasoning>\n" + "step 1 + 2 = 3\n" * 2000 + "</reasoning>\n<answer>\n7\n</answer>\n",
        "<reasoning>\n" * 3000 + "</reasoning>\n<answer>\n" * 3000,
        "<reasoning>" + "a</reasoning>" * 5000,
        "\\boxed{" * 20000,
        "<think>" + "</think>" * 5000 + "\\boxed{" * 5000,
        "<answer>" + "a is " * 5000 + "7 dollars",
    ]
    for name, fn in REWARDS.items():
        t0 = time.perf_counter()
        fn(None, cases, ["7"] * len(cases))
        assert time.perf_counter() - t0 < 1.0, name


def test_prose_in_the_answer_is_not_sent_to_math_verify():
    from grpo_tui.engine.rewards import mathverify

    prose = "Let me think about " * 100 + "\\sqrt{4}"
    assert len(prose) > mathverify.MAX_ANSWER_CHARS
    assert is_correct(prose, "2") is False
    assert is_correct("\\sqrt{4}", "2") is True
