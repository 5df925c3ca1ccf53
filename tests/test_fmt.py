"""tui/fmt.py: each way the UIs write a number, and what each does with a value that is missing or not a number."""

from __future__ import annotations

import math

from grpo_tui.tui.fmt import editable, fixed, fixed_cell, is_real, param_count, score, significant, value


def test_is_real_takes_ints_and_floats_but_not_bools_or_text() -> None:
    assert is_real(3) and is_real(0.5) and is_real(math.nan)
    assert not is_real(True) and not is_real(None) and not is_real("1.0")


def test_fixed_writes_any_real_number_with_fixed_decimals() -> None:
    assert fixed(0.123456) == "0.12" and fixed(1) == "1.00" and fixed(2.5, 0) == "2"
    assert fixed(0.5, signed=True) == "+0.50" and fixed(-0.5, 3, signed=True) == "-0.500"
    assert fixed(None) == "-" and fixed(True) == "-" and fixed("0.5") == "-"
    assert fixed(math.nan) == "nan", "NaN is a number unless finite_only"
    assert fixed(math.nan, finite_only=True) == "-" and fixed(-math.inf, signed=True, finite_only=True) == "-"
    assert fixed(0.25, finite_only=True) == "0.25"


def test_fixed_cell_is_a_dim_dash_when_missing_and_colours_signs() -> None:
    missing = fixed_cell(None, justify="right")
    assert missing.plain == "-" and missing.style == "dim" and missing.justify == "right"
    assert fixed_cell(0.5).plain == "0.50" and fixed_cell(0.5).style == "" and fixed_cell(0.5).justify is None
    assert fixed_cell(1.23456, 3).plain == "1.235"
    up, down, flat = fixed_cell(0.5, signed=True), fixed_cell(-0.5, signed=True), fixed_cell(0.0, signed=True)
    assert (up.plain, up.style) == ("+0.50", "green")
    assert (down.plain, down.style) == ("-0.50", "red")
    assert (flat.plain, flat.style) == ("+0.00", "dim")
    assert fixed_cell(-0.5).style == "", "unsigned cells are not coloured"


def test_value_gives_floats_decimals_and_shows_ints_and_text_as_they_are() -> None:
    assert value(0.12345) == "0.123" and value(0.12345, 2) == "0.12" and value(41.6, 0) == "42"
    assert value(7) == "7" and value("bf16") == "bf16" and value(None) == "-"


def test_significant_gives_floats_significant_digits() -> None:
    assert significant(0.000123456) == "0.000123" and significant(1534.2) == "1.53e+03"
    assert significant(12.5, 2) == "12"
    assert significant(7) == "7" and significant(None) == "-"


def test_editable_writes_a_number_as_typed_into_an_input() -> None:
    assert editable(3e-06) == "3e-06" and editable(0.7) == "0.7" and editable(2) == "2" and editable(2.0) == "2"
    assert editable(None) == "" and editable(True) == "" and editable("0.7") == ""


def test_score_is_signed_zero_is_plain_and_none_does_not_apply() -> None:
    assert score(0.5) == "+0.500" and score(-1.25) == "-1.250" and score(0.123456, 4) == "+0.1235"
    assert score(0) == "0" and score(0.0) == "0"
    assert score(None) == "n/a"
    assert (
        score(0.5, 4, trim=True) == "+0.5"
        and score(1.0, 4, trim=True) == "+1"
        and score(-0.125, 4, trim=True) == ("-0.125")
    )


def test_param_count_tells_different_counts_apart() -> None:
    assert param_count(136_384) == "0.136M" and param_count(4_884_480) == "4.88M" and param_count(7.6e9) == "7.6B"
    assert param_count(None) == "?" and param_count(True) == "?"
