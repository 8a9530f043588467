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

from tools.base import tool

# The pieces live in calc_numbers (limits, size check, output), calc_functions (exact arithmetic,
# functions, constants) and calc_parser (tokenizer, parser); their names stay importable here.
from tools.calc_functions import CONSTANTS, FUNCTIONS  # noqa: F401
from tools.calc_numbers import (  # noqa: F401
    MAX_BITS,
    MAX_DEPTH,
    MAX_EXPONENT_LITERAL,
    MAX_FACTORIAL,
    MAX_INPUT_CHARS,
    MAX_PRINT_DIGITS,
    SIG_DIGITS,
    CalcError,
    Number,
    _check_size,
    format_number,
)
from tools.calc_parser import Tok, _Parser, tokenize  # noqa: F401

__all__ = ["CalcError", "evaluate", "calculator"]


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
