"""Finding an answer in text: the last complete \\boxed{}, the last number, the text inside the last tag pair.

Plain string work that knows no answer format: the formats (answer_format.py) and the gold extraction
(extract.py) are built on it.
"""

from __future__ import annotations

import re

# A number as a grader reads it: optional sign, digits with optional thousands
# separators, optional decimals (".5" too).
NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
# In running text a minus is a sign only where a number can start: "5-3" ends in 3, not -3.
_NUMBER_IN_TEXT_RE = re.compile(r"(?:(?<![\w)\]}.])[-\u2212])?" + NUMBER.replace("[-+]?", ""))
THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BRACE_RE = re.compile(r"[{}]")


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\fbox{...}``) in text.

    Braces nest (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``). A trailing
    unclosed box (a truncated completion) is skipped in favour of the previous
    complete one. ``\boxed 5`` (no braces) gives ``5``.
    """
    if not text or "\\boxed" not in text and "\\fbox" not in text:
        return None
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\b", text)]
    if not starts:
        return None
    # Match every brace once (linear even for thousands of unclosed boxes).
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    for j in reversed(starts):
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text):
            continue
        if text[j] != "{":
            # \boxed 5: the next run of non-space characters
            m = re.match(r"[^\s$]+", text[j:])
            if m:
                return m.group(0).rstrip(".,")
            continue
        if j in closing:
            return text[j + 1 : closing[j]].strip()
        # unclosed (a truncated completion): try the previous box
    return None


def _plain_number(n: str) -> str:
    return THOUSANDS_RE.sub("", n).replace("\u2212", "-")


def numbers(text: str | None) -> list[str]:
    """Every number in text, in order, thousands separators removed ("1,000" -> "1000")."""
    return [_plain_number(n) for n in _NUMBER_IN_TEXT_RE.findall(text or "")]


def last_number(text: str | None) -> str | None:
    """The last number in text, thousands separators removed ("1,000" -> "1000")."""
    found = _NUMBER_IN_TEXT_RE.findall(text or "")
    return _plain_number(found[-1]) if found else None


def in_last_tag(text: str, open_tag: str, close_tag: str) -> str | None:
    """The stripped text after the last open_tag, up to the next close_tag (to the end when it is missing, as a
    truncated completion has it); None without open_tag."""
    if open_tag not in text:
        return None
    inner = text.rsplit(open_tag, 1)[1]
    return inner.split(close_tag, 1)[0].strip()
