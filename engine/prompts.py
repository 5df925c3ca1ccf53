"""Prompt formats: the system prompt that asks for a reasoning format, applied through the model's chat template."""

from __future__ import annotations

from typing import Any

REASONING_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>"""

THINK_PROMPT = """Think step by step inside <think> and </think> tags, then give the final answer \
after the closing tag as \\boxed{answer}."""

ONE_SHOT = {
    "reasoning": ("Example:\nQuestion: Sam has 4 apples and buys 3 more. How many apples does he have?\n"
                  "<reasoning>\nHe starts with 4 and adds 3, so 4 + 3 = 7.\n</reasoning>\n<answer>\n7\n</answer>"),
    "think": ("Example:\nQuestion: Sam has 4 apples and buys 3 more. How many apples does he have?\n"
              "<think>\nHe starts with 4 and adds 3, so 4 + 3 = 7.\n</think>\n\\boxed{7}"),
}

FORMATS = {"reasoning": REASONING_PROMPT, "think": THINK_PROMPT}


def system_prompt(fmt: str, override: str | None = None, one_shot: bool = False) -> str:
    text = override if override is not None else FORMATS[fmt]
    if one_shot:
        text = f"{text}\n\n{ONE_SHOT[fmt]}"
    return text


def build_messages(question: str, system: str) -> list[dict[str, Any]]:
    """Conversational prompt; TRL applies the tokenizer's chat template to it."""
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
