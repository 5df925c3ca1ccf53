"""The answer formats: each format is spelled once, and prompts, extraction, format rewards, SFT targets, eval
scoring and the preset schema read that one record."""

from __future__ import annotations

import tomllib

import pytest
from support.paths import REPO

from grpo_tui.engine.config import PromptConfig
from grpo_tui.engine.config.schema import field_choices
from grpo_tui.engine.data.prompts import build_messages, system_prompt
from grpo_tui.engine.eval.scoring import Completion, score_completion
from grpo_tui.engine.rewards import REWARDS, extract_answer
from grpo_tui.engine.rewards.answer_format import (
    ANSWER_FORMATS,
    EXAMPLE_QUESTION,
    PROMPT_FORMATS,
    REASONING,
    THINK,
    AnswerFormat,
    Tags,
    answer_format,
)
from grpo_tui.engine.train.sft import target_text

# The exact text every recorded run was prompted with: a change here changes what models are trained on.
PINNED = {
    "reasoning": (
        "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>",
        "<reasoning>\nSam starts with 4 apples and buys 3 more, so 4 + 3 = 7.\n</reasoning>\n<answer>\n7\n</answer>",
    ),
    "think": (
        "Think step by step inside <think> and </think> tags, then give the final answer after the closing tag "
        "as \\boxed{answer}.",
        "<think>\nSam starts with 4 apples and buys 3 more, so 4 + 3 = 7.\n</think>\n\\boxed{7}",
    ),
}


@pytest.mark.parametrize("name", ["reasoning", "think"])
def test_rendered_system_prompt_and_example_are_pinned(name):
    system, example = PINNED[name]
    assert system_prompt(name) == system
    assert build_messages("Q?", system_prompt(name), name) == [
        {"role": "system", "content": system},
        {"role": "user", "content": "Sam has 4 apples and buys 3 more. How many apples does Sam have now?"},
        {"role": "assistant", "content": example},
        {"role": "user", "content": "Q?"},
    ]


def test_a_system_prompt_override_replaces_the_formats_own():
    assert build_messages("Q?", system_prompt("think", "Be brief.")) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q?"},
    ]


@pytest.mark.parametrize("name", ["reasoning", "think"])
def test_the_worked_example_scores_full_marks_on_its_formats_rewards(name):
    fmt = answer_format(name)
    assert fmt.extract(fmt.example) == "7" and extract_answer(fmt.example, name) == "7"
    if name == "reasoning":
        assert REWARDS["strict_format"](completions=[fmt.example + "\n"]) == [0.5]
        assert REWARDS["strict_format"](completions=[fmt.example], final_newline=False) == [0.5]
        assert REWARDS["soft_format"](completions=[fmt.example]) == [0.5]
        assert REWARDS["xmlcount"](completions=[fmt.example]) == [0.5]
        assert REWARDS["correctness"](completions=[fmt.example], answer=["7"]) == [2.0]
    else:
        assert REWARDS["think_format"](completions=[fmt.example]) == [0.5]
        assert REWARDS["correctness_think"](completions=[fmt.example], answer=["7"]) == [1.0]


def test_format_patterns_follow_the_tags_they_are_built_from():
    other = AnswerFormat("other", Tags.named("why"), Tags.named("final"), "{layout}", "</final>")
    laid_out = other.render("because\nso", "42")
    assert laid_out == "<why>\nbecause\nso\n</why>\n<final>\n42\n</final>"
    assert other.patterns.strict.fullmatch(laid_out + "\n")
    assert not other.patterns.strict.fullmatch(laid_out)
    assert other.patterns.strict_open_end.fullmatch(laid_out)
    assert other.patterns.soft.match("  " + laid_out.replace("\n", " "))
    assert not other.patterns.strict.fullmatch(laid_out.replace("because", "<final>") + "\n")  # no tag in a block
    assert not REASONING.patterns.soft.match(laid_out) and other.extract(laid_out) == "42"
    assert other.system_prompt == laid_out.replace("because\nso", "...").replace("42", "...")


def test_a_boxed_format_has_no_tag_patterns():
    with pytest.raises(ValueError, match="'think' has no answer tags"):
        THINK.patterns  # noqa: B018 - the property raises


def test_unknown_format_names_the_choices():
    for call in (lambda: answer_format("xml"), lambda: extract_answer("<answer>1</answer>", "xml")):
        with pytest.raises(ValueError, match="unknown prompt_format 'xml'; expected one of reasoning, think"):
            call()


def test_the_reasoning_stop_string_ends_its_example():
    assert REASONING.example.endswith(REASONING.stop_string)
    assert THINK.stop_string is None


def test_presets_stop_at_their_formats_stop_string():
    checked = 0
    for path in sorted((REPO / "presets").glob("*.toml")):
        preset = tomllib.loads(path.read_text())
        stops = preset.get("train", {}).get("stop_strings")
        if stops:
            fmt = answer_format(preset.get("prompt", {}).get("format", "reasoning"))
            assert stops == [fmt.stop_string], path.name
            checked += 1
    assert checked >= 1


def test_the_preset_schema_offers_exactly_the_formats():
    import dataclasses

    (field,) = [f for f in dataclasses.fields(PromptConfig) if f.name == "format"]
    assert field_choices(field) == PROMPT_FORMATS == tuple(ANSWER_FORMATS) == ("reasoning", "think")
    assert EXAMPLE_QUESTION in build_messages("Q?", "s", "think")[1]["content"]


@pytest.mark.parametrize("name", ["reasoning", "think"])
def test_sft_targets_are_laid_out_as_the_example(name):
    assert target_text("Sam starts with 4 apples and buys 3 more, so 4 + 3 = 7.", "7", name) == PINNED[name][1]


def test_eval_scores_strictly_with_the_formats_extractor():
    text = "<think>\nhmm 5\n</think>\nSo \\boxed{7}, not 5."
    row = score_completion(Completion(text, 12, False), "7", "think", math_style=False)
    assert row["extracted"] == "7" and row["correct"]
    assert row["extracted_flex"] == "5" and not row["correct_flex"]
    row = score_completion(Completion(text, 12, False), "7", "reasoning", math_style=False)
    assert row["extracted"] is None and not row["correct"]
