"""A small calculator with its own parser: exact where the input is exact, bounded everywhere.

Nothing here calls `eval` or compiles Python. Exact inputs (integers, decimals, percentages)
stay `Fraction`s, so `0.1+0.2` is exactly `0.3`; functions such as `sin` or `sqrt` of a
non-square switch to floats. Every operation whose cost grows with its operands (powers,
factorials, long literals) is checked against a size budget *before* it runs, which is what keeps
`9**9**9` an instant error instead of a hung process.

Conventions a reader might not guess: `^` means power (models write it that way), `log` is
base 10 (`ln` is natural, `log(x, b)` takes a base), `round` rounds halves away from zero,
`a + 10%` means "a plus ten percent of a", and a comma is a thousands separator only outside
function calls and only in groups of three (`1,234,567`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Union

from tools.base import tool

__all__ = ["CalcError", "evaluate", "calculator"]

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
# Tokens


@dataclass(frozen=True)
class Tok:
    kind: str  # "num", "name", "op", "(", ")", ",", "end"
    text: str
    pos: int
    value: Fraction | None = None


_GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])")
_OPERATORS = ("**", "//", "+", "-", "*", "/", "%", "^", "!", "×", "÷", "−")
_OP_ALIASES = {"×": "*", "÷": "/", "−": "-", "^": "**"}


def _ascii_digit(ch: str) -> bool:
    # str.isdigit() also accepts superscripts and other scripts' digits, which int() rejects
    # (or reads as a different number): only 0-9 are digits here.
    return "0" <= ch <= "9"


def _read_number(src: str, i: int, allow_grouping: bool) -> tuple[Fraction, int]:
    """Read a numeric literal at `i`; returns its exact value and the index after it."""
    start = i
    n = len(src)
    int_digits = ""
    while i < n and (_ascii_digit(src[i]) or (src[i] == "_" and int_digits and i + 1 < n and _ascii_digit(src[i + 1]))):
        if src[i] != "_":  # Python-style digit grouping: 1_000
            int_digits += src[i]
        i += 1
    # Thousands separators: 1-3 leading digits, then one or more ",ddd" groups.
    if allow_grouping:
        grouped = _GROUPED.match(src, start)
        if grouped:
            end = grouped.end()
            if src.startswith(",", end) and end + 1 < n and _ascii_digit(src[end + 1]):
                raise CalcError(
                    f"ambiguous comma at position {end + 1}: write thousands as 1,234 "
                    "(groups of three digits) or leave the separators out"
                )
            int_digits, i = grouped.group(0).replace(",", ""), end
    frac_digits = ""
    if i < n and src[i] == ".":
        i += 1
        while i < n and _ascii_digit(src[i]):
            frac_digits += src[i]
            i += 1
    if not int_digits and not frac_digits:
        raise CalcError(f"expected a number at position {start + 1}")
    exponent = 0
    if i < n and src[i] in "eE":
        j = i + 1
        sign = 1
        if j < n and src[j] in "+-":
            sign = -1 if src[j] == "-" else 1
            j += 1
        exp_digits = ""
        while j < n and _ascii_digit(src[j]):
            exp_digits += src[j]
            j += 1
        if exp_digits:
            if len(exp_digits) > 6 or int(exp_digits) > MAX_EXPONENT_LITERAL:
                raise CalcError(
                    f"the exponent in {src[start:j]!r} is too large (limit e±{MAX_EXPONENT_LITERAL})"
                )
            exponent = sign * int(exp_digits)
            i = j
    mantissa = int(int_digits or "0") * 10 ** len(frac_digits) + int(frac_digits or "0")
    scale = exponent - len(frac_digits)
    value = Fraction(mantissa * 10**scale) if scale >= 0 else Fraction(mantissa, 10**-scale)
    _check_size(value)
    return value, i


def tokenize(src: str) -> list[Tok]:
    if len(src) > MAX_INPUT_CHARS:
        raise CalcError(f"expression is {len(src)} characters long; the limit is {MAX_INPUT_CHARS}")
    tokens: list[Tok] = []
    # For each open parenthesis: True when it opened a function call (commas separate arguments).
    parens: list[bool] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
            continue
        if _ascii_digit(ch) or (ch == "." and i + 1 < n and _ascii_digit(src[i + 1])):
            in_call = bool(parens) and parens[-1]
            value, j = _read_number(src, i, allow_grouping=not in_call)
            tokens.append(Tok("num", src[i:j], i, value))
            i = j
            continue
        if ch.isascii() and ch.isalpha():
            j = i
            while j < n and src[j].isascii() and (src[j].isalnum() or src[j] == "_"):
                j += 1
            tokens.append(Tok("name", src[i:j].lower(), i))
            i = j
            continue
        if ch == "π":
            tokens.append(Tok("name", "pi", i))
            i += 1
            continue
        if ch == "(":
            parens.append(bool(tokens) and tokens[-1].kind == "name" and tokens[-1].text in FUNCTIONS)
            if len(parens) > MAX_DEPTH:
                raise CalcError(f"parentheses nest deeper than {MAX_DEPTH} levels")
            tokens.append(Tok("(", ch, i))
            i += 1
            continue
        if ch == ")":
            if not parens:
                raise CalcError(f"unmatched ')' at position {i + 1}")
            parens.pop()
            tokens.append(Tok(")", ch, i))
            i += 1
            continue
        if ch == ",":
            if not parens or not parens[-1]:
                raise CalcError(
                    f"unexpected ',' at position {i + 1}: commas separate function arguments; "
                    "write thousands as 1,234 or without separators"
                )
            tokens.append(Tok(",", ch, i))
            i += 1
            continue
        for op in _OPERATORS:
            if src.startswith(op, i):
                tokens.append(Tok("op", _OP_ALIASES.get(op, op), i))
                i += len(op)
                break
        else:
            raise CalcError(f"unexpected character {ch!r} at position {i + 1}")
    if parens:
        raise CalcError("missing ')': an opening parenthesis is never closed")
    tokens.append(Tok("end", "", n))
    return tokens


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


# ---------------------------------------------------------------------------------------------
# Parser: precedence climbing that evaluates as it goes (no tree to keep around).


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0
        self.depth = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str) -> Tok:
        tok = self.take()
        if tok.kind != kind:
            found = "the end of the expression" if tok.kind == "end" else repr(tok.text)
            raise CalcError(f"expected {kind!r} at position {tok.pos + 1}, found {found}")
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalcError(f"expression nests deeper than {MAX_DEPTH} levels")

    def parse(self) -> Number:
        value, _ = self.additive()
        tok = self.peek()
        if tok.kind != "end":
            raise CalcError(f"unexpected {tok.text!r} at position {tok.pos + 1}")
        return value

    # Each level returns (value, is_percent) so `a + 10%` can mean a * 1.10.
    def additive(self) -> tuple[Number, bool]:
        self.enter()
        left, pct = self.term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            right, right_pct = self.term()
            if right_pct and not pct:
                factor = _arith(op, Fraction(1), right)
                left = _arith("*", left, factor)
            else:
                left = _arith(op, left, right)
            pct = False
        self.depth -= 1
        return left, pct

    def term(self) -> tuple[Number, bool]:
        left, pct = self.unary()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in ("*", "/", "//", "%"):
                self.take()
                right, _ = self.unary()
                left, pct = _arith(tok.text, left, right), False
            elif tok.kind in ("name", "(") and not (tok.kind == "name" and tok.text == "of"):
                # Implicit multiplication: 2pi, 3(4+5), (1+2)(3+4). Never between two numbers:
                # "1 000" must not silently mean 0.
                right, _ = self.unary()
                left, pct = _arith("*", left, right), False
            elif tok.kind == "name" and tok.text == "of" and pct:
                # "15% of 80"
                self.take()
                right, _ = self.unary()
                left, pct = _arith("*", left, right), False
            else:
                return left, pct

    def unary(self) -> tuple[Number, bool]:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.take()
            self.enter()
            value, pct = self.unary()
            self.depth -= 1
            return (_arith("-", Fraction(0), value) if tok.text == "-" else value), pct
        return self.power()

    def power(self) -> tuple[Number, bool]:
        base, pct = self.postfix()
        if self.peek().kind == "op" and self.peek().text == "**":
            self.take()
            self.enter()
            exponent, _ = self.unary()  # right-associative, and 2**-1 works
            self.depth -= 1
            return _arith("**", base, exponent), False
        return base, pct

    def postfix(self) -> tuple[Number, bool]:
        value = self.primary()
        pct = False
        while self.peek().kind == "op" and self.peek().text in ("!", "%"):
            tok = self.peek()
            if tok.text == "%":
                nxt = self.toks[self.i + 1]
                # "%" followed by an operand is modulo (10 % 3); otherwise it is a percent sign.
                if nxt.kind in ("num", "(") or (nxt.kind == "name" and nxt.text != "of"):
                    break
                self.take()
                value, pct = _arith("/", value, Fraction(100)), True
            else:
                self.take()
                value, pct = _fn_factorial(value), False
        return value, pct

    def primary(self) -> Number:
        tok = self.take()
        if tok.kind == "num":
            return tok.value
        if tok.kind == "(":
            self.enter()
            value, _ = self.additive()
            self.depth -= 1
            self.expect(")")
            return value
        if tok.kind == "name":
            if tok.text in FUNCTIONS:
                return self.call(tok)
            if tok.text in CONSTANTS:
                return CONSTANTS[tok.text]
            known = ", ".join(sorted(FUNCTIONS)) + "; constants: " + ", ".join(sorted(CONSTANTS))
            raise CalcError(f"unknown name {tok.text!r} at position {tok.pos + 1}; known functions: {known}")
        if tok.kind == "end":
            raise CalcError("the expression ends where a number was expected")
        raise CalcError(f"unexpected {tok.text!r} at position {tok.pos + 1}; expected a number")

    def call(self, name: Tok) -> Number:
        fn, lo, hi = FUNCTIONS[name.text]
        if self.peek().kind != "(":
            raise CalcError(f"{name.text} needs parentheses: {name.text}(x)")
        self.take()
        self.enter()
        args: list[Number] = []
        if self.peek().kind != ")":
            while True:
                value, _ = self.additive()
                args.append(value)
                if self.peek().kind == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        self.depth -= 1
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise CalcError(f"{name.text} takes {want} argument(s), got {len(args)}")
        return _check_size(fn(*args))


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


def evaluate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result as readable text."""
    if not isinstance(expression, str):
        raise CalcError("the expression must be text")
    text = expression.strip()
    if text.endswith("="):
        text = text[:-1].rstrip()
    if not text:
        raise CalcError("the expression is empty; give something like 17*24+3")
    try:
        value = _Parser(text).parse()
    except RecursionError:
        raise CalcError(f"expression nests too deeply (limit {MAX_DEPTH} levels)") from None
    return format_number(_check_size(value))


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the number.

    Supports + - * / // % ** (or ^), parentheses, percentages (15% of 80, 200 + 10%),
    sqrt, log (base 10, or log(x, base)), ln, exp, sin, cos, tan (radians), abs, round,
    floor, ceil, min, max, factorial (n!) and the constants pi and e.

    Args:
        expression: The expression to evaluate, for example "17*24+3" or "sqrt(2)/2".
    """
    return evaluate(expression)
