"""The calculator's exact arithmetic and its named functions and constants.

Operations stay exact on `Fraction`s where the result is rational (powers, roots of perfect
squares, logs of exact powers) and fall back to floats otherwise; costly ones check the size
budget before they run.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

from tools.calc_numbers import (
    MAX_BITS,
    MAX_FACTORIAL,
    CalcError,
    Number,
    _as_int,
    _bits,
    _check_size,
    _to_float,
    format_number,
)


def _exact_root(value: Fraction, n: int) -> Fraction | None:
    """The exact n-th root of a non-negative fraction, if it is rational."""
    def iroot(k: int) -> int | None:
        if n == 2:
            r = math.isqrt(k)
        else:
            r = round(k ** (1.0 / n)) if k.bit_length() < 1000 else None
            if r is None:
                return None
            for cand in (r - 1, r, r + 1):
                if cand >= 0 and cand**n == k:
                    return cand
            return None
        return r if r * r == k else None

    num, den = iroot(value.numerator), iroot(value.denominator)
    if num is None or den is None:
        return None
    return Fraction(num, den)


def _power(base: Number, exp: Number) -> Number:
    if isinstance(exp, Fraction) and exp.denominator == 1 and isinstance(base, Fraction):
        n = exp.numerator
        if base == 0 and n < 0:
            raise CalcError("division by zero: 0 raised to a negative power")
        if base in (0, 1) or n == 0:
            return Fraction(1) if n == 0 else base
        if base == -1:
            return Fraction(1 if n % 2 == 0 else -1)
        if _bits(base) * abs(n) > MAX_BITS + 64:
            raise CalcError(
                f"exponent too large: {format_number(base)}**{n} would have more than "
                f"about {int(MAX_BITS * 0.30103)} digits"
            )
        return _check_size(base**n)
    if isinstance(exp, Fraction) and isinstance(base, Fraction) and base >= 0 and exp.denominator <= 16:
        root = _exact_root(base, exp.denominator)
        if root is not None:
            return _power(root, Fraction(exp.numerator))
    b, e = _to_float(base), _to_float(exp)
    if b < 0 and not float(e).is_integer():
        raise CalcError("a negative number raised to a fractional power is not a real number")
    if b == 0 and e < 0:
        raise CalcError("division by zero: 0 raised to a negative power")
    try:
        return _check_size(math.pow(b, e))
    except OverflowError:
        raise CalcError("result too large (overflow)") from None


def _arith(op: str, a: Number, b: Number) -> Number:
    if isinstance(a, float) or isinstance(b, float):
        a, b = _to_float(a), _to_float(b)
    try:
        if op == "+":
            return _check_size(a + b)
        if op == "-":
            return _check_size(a - b)
        if op == "*":
            return _check_size(a * b)
        if op == "/":
            return _check_size(a / b)
        if op == "//":
            return _check_size(Fraction(a // b) if isinstance(a, Fraction) else float(a // b))
        if op == "%":
            return _check_size(a % b)
        if op == "**":
            return _power(a, b)
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise CalcError("result too large (overflow)") from None
    raise CalcError(f"unknown operator {op!r}")


def _round_half_away(value: Fraction, places: int) -> Fraction:
    scale = Fraction(10) ** places
    scaled = abs(value) * scale
    rounded = math.floor(scaled + Fraction(1, 2))
    return Fraction(rounded if value >= 0 else -rounded) / scale


def _fn_round(x: Number, places: Number = Fraction(0)) -> Number:
    p = _as_int(places, "round's number of places")
    if abs(p) > 100:
        raise CalcError("round's number of places must be between -100 and 100")
    if isinstance(x, float):
        return _to_float(_round_half_away(Fraction(x), p))
    return _round_half_away(x, p)


def _fn_sqrt(x: Number) -> Number:
    if x < 0:
        raise CalcError(f"sqrt of a negative number ({format_number(x)}) is not a real number")
    if isinstance(x, Fraction):
        root = _exact_root(x, 2)
        if root is not None:
            return root
    return math.sqrt(_to_float(x))


def _log_checked(x: Number, fn: Callable[[float], float], name: str) -> float:
    if x <= 0:
        raise CalcError(f"{name} needs a positive number, got {format_number(x)}")
    if isinstance(x, Fraction) and _bits(x) > 1000:
        # float() would overflow; logs of big exact values are still well defined.
        return fn(x.numerator) - fn(x.denominator) if fn is not math.log10 else (
            math.log10(x.numerator) - math.log10(x.denominator)
        )
    return fn(_to_float(x))


def _fn_log(x: Number, base: Number | None = None) -> Number:
    if base is None:
        if isinstance(x, Fraction) and x > 0 and x.denominator == 1:
            k = _exact_log(x.numerator, 10)
            if k is not None:
                return Fraction(k)
        return _log_checked(x, math.log10, "log")
    if base <= 0 or base == 1:
        raise CalcError(f"log base must be positive and not 1, got {format_number(base)}")
    if isinstance(x, Fraction) and isinstance(base, Fraction) and x.denominator == 1 and base.denominator == 1:
        k = _exact_log(x.numerator, base.numerator)
        if k is not None:
            return Fraction(k)
    return _log_checked(x, math.log, "log") / _log_checked(base, math.log, "log")


def _exact_log(n: int, base: int) -> int | None:
    if n < 1 or base < 2:
        return None
    k = 0
    while n % base == 0:
        n //= base
        k += 1
    return k if n == 1 else None


def _fn_factorial(x: Number) -> Number:
    n = _as_int(x, "factorial")
    if n < 0:
        raise CalcError("factorial is defined for non-negative whole numbers only")
    if n > MAX_FACTORIAL:
        raise CalcError(f"factorial of {n} is too large (limit {MAX_FACTORIAL}!)")
    return _check_size(Fraction(math.factorial(n)))


def _float_fn(fn: Callable[[float], float], name: str) -> Callable[[Number], Number]:
    def apply(x: Number) -> Number:
        try:
            return _check_size(fn(_to_float(x)))
        except OverflowError:
            raise CalcError(f"{name} result too large (overflow)") from None
        except ValueError:
            raise CalcError(f"{name} is not defined for {format_number(x)}") from None

    return apply


def _exact_or_float(fn_exact: Callable[[Fraction], Fraction], fn_float: Callable[[float], float]):
    def apply(x: Number) -> Number:
        if isinstance(x, Fraction):
            return Fraction(fn_exact(x))
        return float(fn_float(x))

    return apply


def _minmax(pick: Callable) -> Callable[..., Number]:
    def apply(*xs: Number) -> Number:
        if not xs:
            raise CalcError("min/max need at least one argument")
        return pick(xs)

    return apply


# name -> (function, minimum arguments, maximum arguments)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (_fn_sqrt, 1, 1),
    "log": (_fn_log, 1, 2),
    "ln": (lambda x: _log_checked(x, math.log, "ln"), 1, 1),
    "log10": (lambda x: _fn_log(x), 1, 1),
    "log2": (lambda x: _fn_log(x, Fraction(2)), 1, 1),
    "exp": (_float_fn(math.exp, "exp"), 1, 1),
    "sin": (_float_fn(math.sin, "sin"), 1, 1),
    "cos": (_float_fn(math.cos, "cos"), 1, 1),
    "tan": (_float_fn(math.tan, "tan"), 1, 1),
    "asin": (_float_fn(math.asin, "asin"), 1, 1),
    "acos": (_float_fn(math.acos, "acos"), 1, 1),
    "atan": (_float_fn(math.atan, "atan"), 1, 1),
    "abs": (lambda x: abs(x), 1, 1),
    "round": (_fn_round, 1, 2),
    "floor": (_exact_or_float(math.floor, math.floor), 1, 1),
    "ceil": (_exact_or_float(math.ceil, math.ceil), 1, 1),
    "min": (_minmax(min), 1, 100),
    "max": (_minmax(max), 1, 100),
    "factorial": (_fn_factorial, 1, 1),
}

CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}
