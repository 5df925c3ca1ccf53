"""Answer extraction, gold extraction and the correct/incorrect judgment.

Everything here is pure string work except the last step of `is_correct`,
which asks math-verify (through the bounded worker in `mathverify.py`) when
the two answers are not both plain numbers.
"""

from __future__ import annotations

import re
from fractions import Fraction

from . import mathverify
from .answer_format import PROMPT_FORMATS, answer_format
from .locate import NUMBER, THOUSANDS_RE, last_boxed, last_number

GOLD_KINDS = ("gsm8k", "boxed", "plain", "number")


def extract_answer(text: str | None, prompt_format: str = "reasoning") -> str | None:
    """The answer a completion gives, as the trainer records it: the extractor of the prompt format
    (answer_format.AnswerFormat.extract); ValueError for an unknown format."""
    if text is None:
        return None
    return answer_format(prompt_format).extract(text)


# ------------------------------------------------------------------------ gold


def gold_from_solution(text: str, kind: str) -> str | None:
    r"""The gold answer from a dataset's solution field.

    ``"gsm8k"``: text after the last ``####``, thousands separators removed
    (None without ``####``). ``"boxed"``: the last ``\boxed{}`` of a MATH-style
    solution (nested braces). ``"plain"``: the stripped field (None if empty).
    ``"number"``: the field read as one number, units and all (``9 (apples)``
    gives ``9``, ``145.0`` gives ``145``; None when it is not one number).
    """
    if kind == "gsm8k":
        if text is None or "####" not in text:
            return None
        gold = text.rsplit("####", 1)[1].strip()
        gold = THOUSANDS_RE.sub("", gold)
        return gold or None
    if kind == "boxed":
        return last_boxed(text or "")
    if kind == "plain":
        gold = str(text).strip() if text is not None else ""
        return gold or None
    if kind == "number":
        value = parse_number(text)
        return None if value is None else format_number(value)
    raise ValueError(f"unknown gold kind {kind!r}; expected one of {', '.join(GOLD_KINDS)}")


# ------------------------------------------------------------------ judgment

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# A sentence or label before the number: digit-free text ending in a space, ':' or '=' (any language's letters
# before them: "Eli has 17", "答案是 175", "x = 5"), or in a letter of a script written without spaces ("共175").
_PREFIX = r"(?:[^\d]*?(?:[\s:=]|[^\W\d_a-z]))?"
# A unit after it: digit-free text starting with a letter of any script ("17 stickers", "175本", "3 m/s") or
# in parentheses ("9 (apples)", ASDiv's gold style); a number of anything is that number.
_UNIT = r"(?:%|(?:[^\W\d_]|\(\s*[^\W\d_])[^\d]*)?"
_NUMERIC_RE = re.compile(
    "^" + _PREFIX + r"(?:\$|usd|£|€|¥|￥)?\s*"
    r"(?P<num>" + NUMBER + r")"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?"
    r"\s*" + _UNIT + "$"
)
# Full-width forms ("１７５", "（个）", "：") read as their ASCII twins; not NFKC, which would make "cm²" "cm2".
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FRAC_RE = re.compile(r"^(?P<sign>[-+]?)\\[dt]?frac\{(?P<a>-?\d+)\}\{(?P<b>-?\d+)\}$")
_MC_RE = re.compile(r"^\(?([A-E])\)?\.?$")
# A number in another base, "52_8" / "4210_{5}": math-verify drops the subscript.
_BASE_RE = re.compile(r"^([0-9A-Z]*[0-9][0-9A-Z]*)_\{?(\d+)\}?$")


def _unwrap(s: str) -> str:
    s = s.strip()
    inner = last_boxed(s) if s.startswith(("\\boxed", "\\fbox")) else None
    if inner is not None:
        s = inner
    for _ in range(3):
        s2 = _TEXT_CMD_RE.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s.count("$") == 2:
        s = s[1:-1]
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2]
    for tok in ("\\$", "\\%", "\\,", "\\!", "\\;", "\\ ", "~", "\\left", "\\right"):
        s = s.replace(tok, "%" if tok == "\\%" else ("$" if tok == "\\$" else ""))
    return s.strip()


def parse_number(s: str | None) -> Fraction | None:
    """A grader's reading of s as a number, or None if it is not just a number.

    Accepts ``1,000``, ``$18``, ``18.00``, ``18 dollars``, ``18.``, ``18%``,
    ``-3``, ``1/2``, ``\\frac{1}{2}``, ``answer: 18``, a sentence with one
    number (``Eli has 17 stickers``), a unit in any script (``175本``), a unit
    in parentheses (``9 (apples)``) and full-width digits (``１７５``); rejects
    anything with more than one number in it ("2 hours 30 minutes", "1, 2").
    """
    if s is None:
        return None
    s = str(s).translate(_FULL_WIDTH).replace("\u2212", "-")
    s = _unwrap(s).lower()
    s = s.rstrip(" .。!")  # a sentence ends the same with or without its full stop
    s = s.strip()
    if not s:
        return None
    m = _FRAC_RE.match(s.replace(" ", ""))
    if m:
        b = int(m.group("b"))
        if b == 0:
            return None
        v = Fraction(int(m.group("a")), b)
        return -v if m.group("sign") == "-" else v
    m = _NUMERIC_RE.match(s)
    if not m:
        return None
    num = m.group("num").replace(",", "")
    try:
        v = Fraction(num)
        if m.group("den") is not None:
            den = Fraction(m.group("den"))
            if den == 0:
                return None
            v = v / den
    except (ValueError, ZeroDivisionError):
        return None
    return v


def format_number(value: Fraction) -> str:
    """145 for Fraction(145), 0.25 for Fraction(1, 4), 1/3 where no finite decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    from decimal import Decimal, localcontext

    with localcontext() as ctx:  # exact: a finite decimal has at most as many digits as 2s and 5s in d
        ctx.prec = 60
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def multiple_choice_letter(s: str | None) -> str | None:
    """'B' for 'B', '(B)', 'B.', '\\text{(B)}', '\\boxed{B}'; None otherwise (case-sensitive)."""
    if s is None:
        return None
    m = _MC_RE.match(_unwrap(str(s)).replace(" ", ""))
    return m.group(1) if m else None


def _canonical(s: str) -> str:
    return re.sub(r"\s+", "", _unwrap(s)).rstrip(".")


def judge(extracted: str | None, gold: str | None, *, timeout_s: float | None = None) -> bool:
    """Like ``is_correct`` but raises MathVerifyTimeout / MathVerifyError (rewards count those)."""
    if extracted is None or gold is None:
        return False
    extracted, gold = str(extracted).strip(), str(gold).strip()
    if not extracted or not gold:
        return False
    gold_letter = multiple_choice_letter(gold)
    if gold_letter is not None:
        return multiple_choice_letter(extracted) == gold_letter
    gold_base = _BASE_RE.match(_canonical(gold))
    if gold_base is not None:
        pred_c = _canonical(extracted)
        pred_base = _BASE_RE.match(pred_c)
        if pred_base is not None:
            return pred_base.groups() == gold_base.groups()
        return pred_c == gold_base.group(1)
    g, p = parse_number(gold), parse_number(extracted)
    if g is not None and p is not None:
        return g == p
    if _canonical(extracted) == _canonical(gold):
        return True
    if g is not None and not re.search(r"[\\^{}]|\d", extracted):
        return False  # numeric gold, no digits or LaTeX in the answer: nothing to ask math-verify
    return mathverify.equivalent(extracted, gold, timeout_s=timeout_s)


def is_correct(extracted: str | None, gold: str | None, *, timeout_s: float | None = None) -> bool:
    """Whether an extracted answer matches the gold answer; never raises.

    Order: multiple choice (gold a single letter A-E, optionally in parentheses
    or ``\\text{}``) is judged strictly on the letter; two plain numbers compare
    exactly after normalization (``parse_number``: ``1,000``, ``$18``,
    ``18.00``, ``18 dollars``, ``18.``); otherwise equal canonical strings, else
    math-verify equivalence, bounded by ``timeout_s`` (default 5 s; a timeout or
    a math-verify error counts as incorrect).
    """
    try:
        return judge(extracted, gold, timeout_s=timeout_s)
    except Exception:  # noqa: BLE001 - the dashboard's judgment must not take anything down
        return False


# Where an answer sits in text and the format records live in locate.py and answer_format.py; callers read them here.
__all__ = [
    "GOLD_KINDS",
    "PROMPT_FORMATS",
    "extract_answer",
    "format_number",
    "gold_from_solution",
    "is_correct",
    "judge",
    "last_boxed",
    "last_number",
    "multiple_choice_letter",
    "parse_number",
]
