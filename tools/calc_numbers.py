"""Numbers for the calculator: limits, the size check, conversions and readable output.

Exact values are `Fraction`s and inexact ones `float`s; every result passes `_check_size`, which
keeps exact values within `MAX_BITS` and turns float overflow into a `CalcError`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Union

MAX_INPUT_CHARS = 1000
MAX_DEPTH = 60
# Exact values (numerator and denominator) may not exceed this many bits (~3000 digits).
MAX_BITS = 10_000
MAX_FACTORIAL = 1000
MAX_EXPONENT_LITERAL = 3000
# Exact integers longer than this print in scientific notation.
MAX_PRINT_DIGITS = 60
SIG_DIGITS = 15

Number = Union[Fraction, float]


class CalcError(ValueError):
    """The expression cannot be evaluated; the message says why and what to change."""


# ---------------------------------------------------------------------------------------------
# Numbers


def _bits(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _check_size(value: Number) -> Number:
    if isinstance(value, Fraction):
        if _bits(value) > MAX_BITS:
            raise CalcError(f"result too large: more than about {int(MAX_BITS * 0.30103)} digits")
    elif math.isinf(value) or math.isnan(value):
        raise CalcError("result too large or undefined (overflow)")
    return value


def _to_float(value: Number) -> float:
    if isinstance(value, float):
        return value
    try:
        return value.numerator / value.denominator
    except OverflowError:
        raise CalcError("number too large for this function") from None


def _as_int(value: Number, what: str) -> int:
    if isinstance(value, Fraction) and value.denominator == 1:
        return value.numerator
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise CalcError(f"{what} needs a whole number, got {format_number(value)}")



# ---------------------------------------------------------------------------------------------
# Output


def _sci(value: Number) -> str:
    if isinstance(value, Fraction):
        sign = "-" if value < 0 else ""
        num, den = abs(value.numerator), value.denominator
        # Exponent from digit counts, then correct by one if the estimate was off.
        exp = len(str(num)) - len(str(den))
        scaled = Fraction(num, den) / Fraction(10) ** exp
        if scaled < 1:
            exp -= 1
            scaled *= 10
        digits = round(scaled * 10 ** (SIG_DIGITS - 1))
        if digits >= 10**SIG_DIGITS:
            digits //= 10
            exp += 1
        mant = str(digits)
        mant = (mant[0] + "." + mant[1:]).rstrip("0").rstrip(".")
        return f"{sign}{mant}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    return f"{value:.{SIG_DIGITS}g}"


def format_number(value: Number) -> str:
    """Readable text: `411`, `0.3`, `0.333333333333333`, `1.2e+100`."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = f"{value:.{SIG_DIGITS}g}"
        return text
    if value.denominator == 1:
        digits = str(abs(value.numerator))
        if len(digits) > MAX_PRINT_DIGITS:
            return _sci(value)
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    places = max(twos, fives)
    if den == 1 and places <= 20:
        # A terminating decimal: print it exactly.
        scaled = abs(value) * 10**places
        whole = str(scaled.numerator).rjust(places + 1, "0")
        text = whole[:-places] + "." + whole[-places:]
        text = text.rstrip("0").rstrip(".")
        if len(text.replace(".", "").lstrip("0")) <= MAX_PRINT_DIGITS:
            return ("-" if value < 0 else "") + text
    if Fraction(1, 10**6) <= abs(value) < Fraction(10**15):
        text = f"{float(value):.{SIG_DIGITS}g}"
        if "e" not in text:
            return text
    return _sci(value)
