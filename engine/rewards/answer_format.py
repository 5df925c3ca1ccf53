"""The answer formats a prompt can ask for, one record each: the single home of a format's tags, system prompt,
worked example, answer extractor, stop string and the patterns its format rewards match.

Everything else reads these records: the prompts (data/prompts.py), answer extraction (extract.py), the format
rewards (builtin.py), SFT targets and eval scoring. The patterns are derived from the tags and the layout that
`render` writes, so a format is spelled once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .locate import in_last_tag, last_boxed, last_number

# The one-shot example: the same question in every format, answered in the format's layout.
EXAMPLE_QUESTION = "Sam has 4 apples and buys 3 more. How many apples does Sam have now?"
_EXAMPLE_THOUGHT = "Sam starts with 4 apples and buys 3 more, so 4 + 3 = 7."
_EXAMPLE_ANSWER = "7"

# Stands for a block's body in `render`'s output while the strict pattern is built from it.
_HOLE = "\0"


@dataclass(frozen=True)
class Tags:
    """An opening and a closing tag, e.g. <answer> and </answer>."""

    open: str
    close: str

    @classmethod
    def named(cls, name: str) -> Tags:
        return cls(f"<{name}>", f"</{name}>")


ANSWER_TAGS = Tags.named("answer")


@dataclass(frozen=True)
class TagPatterns:
    """What the tag-format rewards (strict_format, soft_format) match; `xmlcount` reads the tags themselves."""

    strict: re.Pattern[str]  # the whole completion in the exact layout, ending in one newline
    strict_open_end: re.Pattern[str]  # the same, the final newline optional
    soft: re.Pattern[str]  # a thought block then an answer block, any whitespace around and between


@dataclass(frozen=True)
class AnswerFormat:
    """One prompt format.

    thought: the tags around the reasoning. answer: the tags around the answer, or None when the answer is a
    \\boxed{} after the closing thought tag. prompt_template: the system prompt, formatted with `layout` (the
    layout with "..." for each part) and `thought` (the Tags). stop_string: where a completion in this format is
    finished, for a preset's [train] stop_strings (None: no string ends it).
    """

    name: str
    thought: Tags
    answer: Tags | None
    prompt_template: str
    stop_string: str | None

    def render(self, thought: str, answer: str) -> str:
        """A completion laid out exactly as the format asks (the worked example, SFT targets, strict_format)."""
        head = f"{self.thought.open}\n{thought}\n{self.thought.close}\n"
        if self.answer is None:
            return head + f"\\boxed{{{answer}}}"
        return head + f"{self.answer.open}\n{answer}\n{self.answer.close}"

    @property
    def system_prompt(self) -> str:
        return self.prompt_template.format(layout=self.render("...", "..."), thought=self.thought)

    @property
    def example(self) -> str:
        """The assistant turn of the one-shot example, answering EXAMPLE_QUESTION."""
        return self.render(_EXAMPLE_THOUGHT, _EXAMPLE_ANSWER)

    def extract(self, text: str | None) -> str | None:
        r"""The answer a completion gives, as the trainer records it (None: it gives none).

        With answer tags: the stripped text inside the last answer tag (to the end when the closing tag is
        missing, as the original recipe's split-based extractor does). Without: only the text after the last
        closing thought tag counts (a completion truncated while thinking has no answer); in it, the last
        ``\boxed{}``, else an ``<answer>`` tag, else the last number.
        """
        if text is None:
            return None
        if self.answer is not None:
            return in_last_tag(text, self.answer.open, self.answer.close)
        if self.thought.close not in text:
            return None
        tail = text.rsplit(self.thought.close, 1)[1]
        boxed = last_boxed(tail)
        if boxed is not None:
            return boxed
        tagged = in_last_tag(tail, ANSWER_TAGS.open, ANSWER_TAGS.close)
        if tagged is not None:
            return tagged
        return last_number(tail)

    @cached_property
    def patterns(self) -> TagPatterns:
        """The strict and soft patterns, from the tags and `render`'s layout (formats with answer tags only)."""
        if self.answer is None:
            raise ValueError(f"answer format {self.name!r} has no answer tags for strict/soft patterns")
        # a block's body: any text (newlines too, under DOTALL) holding none of the format's tags, so the lazy
        # match cannot swallow a second block
        tags = (self.thought.open, self.thought.close, self.answer.open, self.answer.close)
        body = "(?:(?!" + "|".join(re.escape(t) for t in tags) + ").)*?"
        layout = body.join(re.escape(part) for part in self.render(_HOLE, _HOLE).split(_HOLE))
        t_open, t_close = re.escape(self.thought.open), re.escape(self.thought.close)
        a_open, a_close = re.escape(self.answer.open), re.escape(self.answer.close)
        soft = r"\s*" + t_open + body + t_close + r"\s*" + a_open + body + a_close
        return TagPatterns(
            strict=re.compile(layout + "\n", re.DOTALL),
            strict_open_end=re.compile(layout + "\n?", re.DOTALL),
            soft=re.compile(soft, re.DOTALL),
        )


REASONING = AnswerFormat(
    name="reasoning",
    thought=Tags.named("reasoning"),
    answer=ANSWER_TAGS,
    prompt_template="Respond in the following format:\n{layout}",
    stop_string=ANSWER_TAGS.close,
)
THINK = AnswerFormat(
    name="think",
    thought=Tags.named("think"),
    answer=None,
    prompt_template=(
        "Think step by step inside {thought.open} and {thought.close} tags, then give the final answer "
        "after the closing tag as \\boxed{{answer}}."
    ),
    stop_string=None,
)

ANSWER_FORMATS: dict[str, AnswerFormat] = {f.name: f for f in (REASONING, THINK)}
PROMPT_FORMATS = tuple(ANSWER_FORMATS)


def answer_format(name: str) -> AnswerFormat:
    """The format called name; ValueError naming the choices for any other."""
    try:
        return ANSWER_FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown prompt_format {name!r}; expected one of {', '.join(PROMPT_FORMATS)}") from None
