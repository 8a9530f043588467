"""Answer extraction and numeric comparison: a table of awkward outputs plus properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.tasks.answers import (
    canonical_number,
    extract_answer,
    marked_answer,
    numbers_match,
    parse_number,
    text_matches,
)

TRICKY = [
    ("The answer is $1,234.50.", "1234.5"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("So she has 5 apples and 3 pears, 8 fruits in total.", "8"),
    ("Answer: 12 (not 13)", "12"),
    ("**Answer:** 7", "7"),
    ("The final answer is $\\boxed{18}$.", "18"),
    ("\\boxed{\\frac{3}{4}}", "0.75"),
    ("\\boxed{\\dfrac{1}{3}}", "1/3"),
    ("It costs \\$\\boxed{1,200} in total, 300 more than 900.", "1200"),
    ("To answer this, we count 5 apples and 8 pears", "8"),  # prose "answer" is no marker
    ("The temperature fell to -4 degrees.", "-4"),
    ("The temperature fell to \u22124 degrees.", "-4"),
    ("so we compute 10 - 5", "5"),  # subtraction, not a negative number
    ("(2+3) -4", "4"),
    ("About 25% of the class.", "25"),
    ("3/4 of the pie", "0.75"),
    ("It takes 2 3/4 hours.", "2.75"),
    ("The train covers 120km.", "120"),
    ("Half is .5 of a cup", "0.5"),
    ("1,2,3 are the first three", "3"),
    ("Costs were 1,000 and 2,500 dollars.", "2500"),
    ("The answer is 42.", "42"),
    ("answer = 3.0", "3"),
    ("We get 1e3 items", "1000"),
    ("no digits at all", ""),
    ("", ""),
    ("#### 1,200\nsome trailing chat 99", "1200"),
    ("The answer is: -0.25", "-0.25"),
    ("Step 1: 3*4=12. Step 2: 12+1=13. The answer is 13, since 3*4 = 12.", "13"),
]


@pytest.mark.parametrize(("text", "expected"), TRICKY)
def test_extract_answer_table(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("pred", "ref", "same"),
    [
        ("0.5", "1/2", True),
        ("$1,200", "1200", True),
        ("1200.00", "1,200", True),
        ("0.3333", "1/3", False),  # 1e-4 relative off: outside the tolerance
        ("0.3333333333", "1/3", True),
        ("0.1", "0.10000001", True),  # within rel_tol=1e-6
        ("0.1", "0.1001", False),
        ("25%", "25", True),
        ("-3", "3", False),
        ("0", "0.0000001", False),
        ("abc", "1", False),
        ("1", "", False),
        ("3/0", "3", False),
    ],
)
def test_numbers_match_table(pred, ref, same):
    assert numbers_match(pred, ref) is same


def test_parse_and_canonical_numbers():
    assert parse_number("$1,234.50") == Fraction(246_9, 2)
    assert parse_number("12 apples") is None
    assert canonical_number("1,200") == "1200"
    assert canonical_number("-0.50") == "-0.5"
    assert canonical_number("seven") is None


def test_marked_answer_prefers_boxed_then_hashes_then_answer():
    assert marked_answer("answer: 1 \\boxed{2} #### 3") == "2"
    assert marked_answer("answer: 1\n#### 3") == "3"
    assert marked_answer("The answer is Paris.") == "Paris."
    assert marked_answer("just prose") is None


def test_text_matches_ignores_formatting_only():
    assert text_matches("I think the answer is: Paris.", "paris")
    assert text_matches("Reasoning...\n  \"Blue Whale\"  ", "blue   whale")
    assert not text_matches("The answer is Lyon.", "Paris")
    assert not text_matches("anything", "")


def _render(value: Fraction, style: int) -> str:
    """Ways models write a number; each must parse back to `value`."""
    sign = "-" if value < 0 else ""
    mag = abs(value)
    if mag.denominator == 1:
        whole = mag.numerator
        plain = str(whole)
        styles = [plain, f"{whole:,}", f"${whole:,}", f"{whole}.00"]
    else:
        plain = f"{mag.numerator}/{mag.denominator}"
        styles = [plain, f"\\frac{{{mag.numerator}}}{{{mag.denominator}}}"]
    return sign + styles[style % len(styles)]


numbers = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12).map(Fraction),
    st.fractions(max_denominator=1000).filter(lambda f: abs(f) < 10**6),
)


@settings(max_examples=200, deadline=None)
@given(value=numbers, style=st.integers(0, 3), noise=st.lists(st.integers(0, 999), max_size=4))
def test_marked_answer_survives_noise(value, style, noise):
    prose = " ".join(f"step {n} gives {n * 2}." for n in noise)
    for template in ("{p} The answer is {v}.", "{p}\n#### {v}", "{p} so \\boxed{{{v}}}", "{p} Answer: {v}"):
        text = template.format(p=prose, v=_render(value, style))
        assert numbers_match(extract_answer(text), str(value)), text


@settings(max_examples=200, deadline=None)
@given(value=numbers, style=st.integers(0, 3))
def test_last_number_wins_without_marker(value, style):
    text = f"First 17 then 4, finally {_render(value, style)}"
    assert numbers_match(extract_answer(text), str(value)), text


@settings(max_examples=200, deadline=None)
@given(value=numbers)
def test_extracted_form_round_trips(value):
    got = extract_answer(f"x = {value}")
    assert parse_number(got) == value


@settings(max_examples=200, deadline=None)
@given(a=numbers, b=numbers)
def test_numbers_match_is_symmetric_and_reflexive(a, b):
    assert numbers_match(str(a), str(a))
    assert numbers_match(str(a), str(b)) == numbers_match(str(b), str(a))
    if a == 0 or b == 0:
        assert numbers_match(str(a), str(b)) == (a == b)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_extract_never_crashes_and_returns_a_number_or_nothing(text):
    got = extract_answer(text)
    assert got == "" or parse_number(got) is not None
