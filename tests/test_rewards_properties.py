"""Property-based tests (hypothesis) for extraction, normalization and the guard."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_tui.engine.rewards import (
    REWARDS,
    count_xml,
    extract_answer,
    gold_from_solution,
    guard,
    is_correct,
    last_boxed,
    parse_number,
)

FAST = settings(max_examples=150, deadline=None)
# Text that cannot contain a tag or a brace: block bodies of a well-formed completion.
plain = st.text(alphabet=st.characters(blacklist_characters="<>{}\\", blacklist_categories=("Cs",)), max_size=80)
integers = st.integers(min_value=-(10**12), max_value=10**12)


def with_separators(n: int) -> str:
    return f"{n:,}"


@FAST
@given(
    integers,
    st.sampled_from(["{}", "${}", "{}.00", "{} dollars", "{}.", "\\${}", " {} ", "\\boxed{{{}}}"]),
    st.booleans(),
)
def test_number_formats_parse_to_the_number(n, template, commas):
    s = template.format(with_separators(n) if commas else str(n))
    assert parse_number(s) == n
    assert is_correct(s, str(n))


@FAST
@given(integers, integers)
def test_integers_are_correct_iff_equal(a, b):
    assert is_correct(str(a), str(b)) is (a == b)
    assert is_correct(with_separators(a), str(b)) is (a == b)


@FAST
@given(st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_decimals_compare_exactly(d):
    text = format(d, "f")
    assert parse_number(text) == Fraction(Decimal(text))
    assert is_correct(text + "0", text)


@FAST
@given(st.integers(min_value=-999, max_value=999), st.integers(min_value=1, max_value=999))
def test_fractions(a, b):
    assert parse_number(f"\\frac{{{a}}}{{{b}}}") == Fraction(a, b)
    assert parse_number(f"{a}/{b}") == Fraction(a, b)


@FAST
@given(plain, plain)
def test_strict_completion_round_trips(reasoning, answer):
    text = f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"
    assert extract_answer(text) == answer.strip()
    assert REWARDS["strict_format"](None, [text], None) == [0.5]
    assert REWARDS["soft_format"](None, [text], None) == [0.5]
    assert count_xml(text) == 0.5
    assert REWARDS["correctness"](None, [text], [answer.strip()]) == [2.0 if answer.strip() else 0.0]


@FAST
@given(plain, plain, st.text(max_size=40))
def test_xmlcount_charges_trailing_text(reasoning, answer, trailing):
    text = f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n" + trailing
    if "\n</answer>" in trailing or "<" in trailing:
        return
    assert count_xml(text) <= 0.5
    assert math.isclose(count_xml(text), 0.5 - 0.002 * len(trailing))


@FAST
@given(
    plain,
    st.recursive(plain, lambda inner: st.builds(lambda a, b, c: f"{a}{{{b}}}{c}", plain, inner, plain), max_leaves=6),
)
def test_last_boxed_takes_balanced_content(prefix, content):
    assert last_boxed(f"{prefix}\\boxed{{{content}}}") == content.strip()
    assert last_boxed(f"\\boxed{{first}} {prefix} \\boxed{{{content}}}") == content.strip()


@FAST
@given(st.integers(min_value=-(10**9), max_value=10**9), plain)
def test_gsm8k_gold(n, solution):
    assert gold_from_solution(f"{solution}\n#### {with_separators(n)}", "gsm8k") == str(n)


@FAST
@given(st.text(max_size=300), st.sampled_from(["reasoning", "think"]))
def test_extraction_and_recipe_rewards_never_raise(text, fmt):
    got = extract_answer(text, fmt)
    assert got is None or isinstance(got, str)
    for name in (
        "correctness",
        "int_answer",
        "strict_format",
        "soft_format",
        "xmlcount",
        "think_format",
        "length_penalty",
    ):
        (v,) = REWARDS[name](None, [text], ["1"])
        assert isinstance(v, float) and math.isfinite(v)


@settings(max_examples=40, deadline=None)
@given(
    st.text(alphabet="0123456789+-*/^().,x{}\\fracsqrt ", max_size=25), st.sampled_from(["2", "\\frac{1}{2}", "x+1"])
)
def test_is_correct_never_raises(answer, gold):
    assert is_correct(answer, gold, timeout_s=2.0) in (True, False)


scalars = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=3), st.booleans()
)


@FAST
@given(
    st.one_of(st.none(), st.lists(scalars, max_size=6), scalars), st.integers(min_value=1, max_value=5), st.booleans()
)
def test_guard_returns_finite_floats_or_nan_for_none(returned, n, raises):
    def fn(prompts, completions, answer, **kwargs):
        if raises:
            raise ValueError("boom")
        return returned

    g = guard(fn, "any", timeout_s=None)
    out = g(None, ["c"] * n, ["1"] * n)
    assert len(out) == n and all(isinstance(v, float) for v in out)
    # NaN only where the function said None for that completion (not applicable), never for a failure
    not_applicable = [
        isinstance(returned, list) and len(returned) == n and returned[i] is None and not raises for i in range(n)
    ]
    assert [math.isnan(v) for v in out] == not_applicable
    assert all(math.isfinite(v) for v, na in zip(out, not_applicable) if not na)
    failures = g.drain_failures()
    assert sum(f["count"] for f in failures) <= n


# ------------------------------------------------ units, sentences, full-width digits

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
units = st.sampled_from(["本", "个", "元", "只苹果", "apples", "stickers", "km", "(apples)", " (个)", "%"])
words = st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Lo")), min_size=1, max_size=12)


@FAST
@given(st.integers(min_value=0, max_value=10**9), units, st.booleans())
def test_a_number_with_a_unit_in_any_language_is_that_number(n, unit, space):
    s = f"{n}{' ' if space else ''}{unit}"
    assert parse_number(s) == n, s
    assert is_correct(s, str(n)) and not is_correct(s, str(n + 1))


@FAST
@given(words, st.integers(min_value=0, max_value=10**6), words, st.sampled_from(["", ".", "。", "!"]))
def test_a_sentence_judges_the_same_with_or_without_its_full_stop(subject, n, noun, stop):
    sentence = f"{subject} has {n} {noun}"
    assert is_correct(sentence + stop, str(n)) is is_correct(sentence, str(n)) is True


@FAST
@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["", "本", "个"]))
def test_full_width_digits_count(n, unit):
    assert is_correct(str(n).translate(FULL_WIDTH) + unit, str(n))
    assert gold_from_solution(str(n).translate(FULL_WIDTH), "number") == str(n)


@FAST
@given(st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from(["{}.0", "{} (apples)", "{}.00", "{} 个"]))
def test_number_golds_read_units_parentheses_and_float_forms(n, template):
    assert gold_from_solution(template.format(n), "number") == str(n)
