"""The calculator's tokenizer and parser: text in, a number out, with no tree kept around."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from tools.calc_functions import CONSTANTS, FUNCTIONS, _arith, _fn_factorial
from tools.calc_numbers import (
    MAX_DEPTH,
    MAX_EXPONENT_LITERAL,
    MAX_INPUT_CHARS,
    CalcError,
    Number,
    _check_size,
)

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

