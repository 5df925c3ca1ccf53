"""Prompts: a question asked in the answer format's conversation (its system prompt, optionally its worked example
as an earlier turn), rendered by the model's chat template. The formats themselves live in rewards/answer_format.py."""

from __future__ import annotations

from typing import Any

from grpo_tui.engine.rewards.answer_format import EXAMPLE_QUESTION, answer_format


def system_prompt(fmt: str, override: str | None = None) -> str:
    return override if override is not None else answer_format(fmt).system_prompt


def build_messages(question: str, system: str, one_shot_format: str | None = None) -> list[dict[str, Any]]:
    """Conversational prompt; TRL applies the tokenizer's chat template to it."""
    messages = [{"role": "system", "content": system}]
    if one_shot_format:
        # The example is an earlier user/assistant turn, not text in the system prompt: small chat models copy the
        # format of a previous assistant turn far more often than they follow an example they are told about.
        messages += [
            {"role": "user", "content": EXAMPLE_QUESTION},
            {"role": "assistant", "content": answer_format(one_shot_format).example},
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


__all__ = ["EXAMPLE_QUESTION", "build_messages", "chat_template_kwargs", "system_prompt"]
