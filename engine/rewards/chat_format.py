"""TRL's conversational format and plain text: the one place rewards cross between them.

For a conversational dataset TRL hands a reward each prompt as a list of messages and each completion as
``[{"role": "assistant", "content": text}]``. User rewards get exactly that; the built-in rewards, the
rollout records and the playground work on the text.
"""

from __future__ import annotations

from typing import Any


def message_text(x: Any) -> str:
    """The text of a prompt (its last user message) or a completion (its last message); text stays text."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x:
        users = [m for m in x if isinstance(m, dict) and m.get("role") == "user"]
        last = (users or x)[-1]
        if isinstance(last, dict):
            content = last.get("content", "")
            return content if isinstance(content, str) else str(content)
        return str(last)
    return ""


def is_conversational(prompts: Any) -> bool:
    """TRL's test: a prompt that is a list of role/content messages."""
    if not isinstance(prompts, (list, tuple)) or not prompts:
        return False
    first = prompts[0]
    return isinstance(first, list) and bool(first) and isinstance(first[0], dict) and "role" in first[0]


def as_messages(question: str, completion: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """One prompt and one completion in TRL's conversational format."""
    return [{"role": "user", "content": question}], [{"role": "assistant", "content": completion}]
