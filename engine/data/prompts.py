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

FORMATS = {"reasoning": REASONING_PROMPT, "think": THINK_PROMPT}

# One worked example, given as an earlier user/assistant turn: small chat models copy the format of a
# previous assistant turn far more often than they follow an example described in the system prompt
# (SmolLM2-135M: tags in 5 of 16 samples as a turn, 0 of 16 in the system prompt).
EXAMPLE_QUESTION = "Sam has 4 apples and buys 3 more. How many apples does Sam have now?"
EXAMPLE_ANSWER = {
    "reasoning": (
        "<reasoning>\nSam starts with 4 apples and buys 3 more, so 4 + 3 = 7.\n</reasoning>\n<answer>\n7\n</answer>"
    ),
    "think": "<think>\nSam starts with 4 apples and buys 3 more, so 4 + 3 = 7.\n</think>\n\\boxed{7}",
}


def system_prompt(fmt: str, override: str | None = None) -> str:
    return override if override is not None else FORMATS[fmt]


def build_messages(question: str, system: str, one_shot_format: str | None = None) -> list[dict[str, Any]]:
    """Conversational prompt; TRL applies the tokenizer's chat template to it."""
    messages = [{"role": "system", "content": system}]
    if one_shot_format:
        messages += [
            {"role": "user", "content": EXAMPLE_QUESTION},
            {"role": "assistant", "content": EXAMPLE_ANSWER[one_shot_format]},
        ]
    return messages + [{"role": "user", "content": question}]


def chat_template_kwargs(cfg: Any) -> dict[str, Any]:
    """Extra arguments of the chat template (e.g. Qwen3's enable_thinking), from [train] chat_template_kwargs:
    every place that renders a prompt for the policy (training, held-out evals, the pre-pass, a reward model)
    renders it the same way."""
    if cfg is None:
        return {}
    value = cfg.train.trl_extra.get("chat_template_kwargs") or getattr(cfg.train, "chat_template_kwargs", None)
    return dict(value or {})
