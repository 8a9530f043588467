"""Pulling a final answer out of free-form model output and comparing it with a reference.

Small models rarely follow an output format exactly, so extraction is forgiving: an explicit
marker wins (`\\boxed{..}`, `#### ..`, "answer: ..", "the answer is .."), otherwise the last
number in the text counts. Numbers are compared as exact rationals so "0.5", "1/2" and "$0.50"
agree while 0.1 + 0.2 float noise cannot make two different answers look equal.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# A number as people and models write it: optional sign (ASCII or Unicode minus), optional
# currency, mixed numbers ("2 3/4"), fractions, thousands separators, decimals, exponents.
# Thousands groups must be exactly three digits, so "1,2,3" stays three numbers.
_NUM = (
    r"(?P<sign>[-\u2212+])?\$?\s?"
    r"(?:"
    r"(?P<mixed_whole>\d+)\s+(?P<mixed_num>\d+)\s*/\s*(?P<mixed_den>\d+)"
    r"|(?P<num>\d+)\s*/\s*(?P<den>\d+)"
    r"|(?P<dec>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<exp>[eE][-+]?\d+)?"
    r")"
    r"(?P<pct>\s?%)?"
)
# Units may follow directly ("120km"), but a trailing digit or slash means we are mid-number.
_NUM_RE = re.compile(r"(?<![\w.])" + _NUM + r"(?![\d/])")
_FRAC_TEX_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_BOXED_RE = re.compile(r"\\boxed\s*\{")
_HASHES_RE = re.compile(r"####\s*(.*)")
# "answer" alone is too common in prose ("to answer this, ..."); it must be followed by
# "is", ":" or "=" (markdown bold allowed in between) to count as a marker.
_MARKER_RE = re.compile(r"\banswer\**\s*(?:is\b\s*[:=]?|[:=])\**\s*", re.IGNORECASE)


def _boxed_contents(text: str) -> list[str]:
    # Brace matching by hand: boxed answers often contain \frac{..}{..}, which a regex cannot pair.
    found = []
    for match in _BOXED_RE.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def _detex(text: str) -> str:
    text = _FRAC_TEX_RE.sub(r"\1/\2", text)
    text = text.replace("\\$", "$").replace("\\%", "%").replace("\\!", "").replace("\\,", ",")
    return re.sub(r"\\text\s*\{([^{}]*)\}", r" \1 ", text)


def _to_fraction(match: re.Match[str], binary_minus: bool = False) -> Fraction | None:
    groups = match.groupdict()
    try:
        if groups["mixed_whole"] is not None:
            den = int(groups["mixed_den"])
            if den == 0:
                return None
            value = int(groups["mixed_whole"]) + Fraction(int(groups["mixed_num"]), den)
        elif groups["num"] is not None:
            den = int(groups["den"])
            if den == 0:
                return None
            value = Fraction(int(groups["num"]), den)
        else:
            digits = groups["dec"].replace(",", "")
            exp = groups["exp"] or ""
            if len(exp) > 4:  # e.g. 1e99999: never a real answer, and costly to build exactly
                return None
            value = Fraction(digits + exp)
    except (ValueError, ZeroDivisionError):
        return None
    if groups["sign"] in ("-", "\u2212") and not binary_minus:
        value = -value
    return value


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # Terminating decimals read better as decimals; others stay exact as p/q. Built from
    # integers, not floats, so the text always parses back to the same value.
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0")
    return ("-" if value < 0 else "") + text


def parse_number(text: str) -> Fraction | None:
    """The value of `text` if it is a single number (with optional $, %, commas), else None."""
    cleaned = _detex(text).strip().rstrip(".").strip()
    match = _NUM_RE.fullmatch(cleaned)
    if match is None:
        return None
    return _to_fraction(match)


def _numbers_in(text: str) -> list[Fraction]:
    values = []
    text = _detex(text)
    for match in _NUM_RE.finditer(text):
        # In "10 - 5" the minus is subtraction: a sign follows an operand only as an operator.
        before = text[: match.start()].rstrip()
        binary = bool(before) and (before[-1].isdigit() or before[-1] in ")]}")
        value = _to_fraction(match, binary_minus=binary)
        if value is not None:
            values.append(value)
    return values


def marked_answer(text: str) -> str | None:
    """The span an explicit marker points at (last boxed, last ####, last "answer ..."), or None."""
    boxed = _boxed_contents(text)
    if boxed:
        return boxed[-1].strip()
    hashes = _HASHES_RE.findall(text)
    if hashes:
        return hashes[-1].strip()
    markers = list(_MARKER_RE.finditer(text))
    if markers:
        rest = text[markers[-1].end():]
        line = rest.strip().splitlines()[0] if rest.strip() else ""
        return line.strip() or None
    return None


def extract_answer(text: str) -> str:
    """The final number in a model's output, normalised ("$1,234.50" -> "1234.5"); "" if none.

    The first number after an explicit marker wins, so "The answer is 12, since 3*4 = 12" and
    "Answer: 12 (not 13)" both give 12; without a marker the last number in the text counts.
    A percentage keeps its number ("25%" -> "25") because references state percentages that way.
    """
    marked = marked_answer(text)
    if marked is not None:
        values = _numbers_in(marked)
        if values:
            return _format(values[0])
    values = _numbers_in(text)
    return _format(values[-1]) if values else ""


def numbers_match(pred: str, ref: str, rel_tol: float = 1e-6) -> bool:
    """True when both parse as numbers that are equal (exactly, or within `rel_tol`)."""
    a, b = parse_number(pred), parse_number(ref)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if b == 0 or a == 0:
        return False
    # Tolerance only rescues rounded decimals of non-terminating values (0.333333 vs 1/3).
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol)
    except OverflowError:
        return False


def normalise_text(text: str) -> str:
    """Case, surrounding quotes, trailing punctuation and runs of spaces do not matter."""
    text = _detex(text).strip().strip("\"'`").strip()
    text = re.sub(r"[.!;,]+$", "", text).strip()
    return re.sub(r"\s+", " ", text).casefold()


def text_matches(output: str, ref: str) -> bool:
    """Exact answer check for non-numeric references, tolerant of formatting only."""
    want = normalise_text(ref)
    if not want:
        return False
    lines = [line for line in output.strip().splitlines() if line.strip()]
    candidates = [marked_answer(output) or "", lines[-1] if lines else "", output]
    return any(normalise_text(c) == want for c in candidates)


def canonical_number(text: str) -> str | None:
    """A reference number written canonically ("1,200" -> "1200"), or None if not a number."""
    value = parse_number(text)
    return None if value is None else _format(value)
