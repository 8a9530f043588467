"""The built-in function-writing tasks of the "code" suite.

Each entry: the function name (entry point), the prompt, a reference solution (kept as the
task's answer, for mistake analysis) and assert-based tests. The tests are plain statements so
they run unchanged after any candidate solution; tests/test_tasks_code.py checks that every
reference solution passes its own tests and that a wrong one fails them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeProblem:
    entry_point: str
    prompt: str
    solution: str
    tests: str


BANK: tuple[CodeProblem, ...] = (
    CodeProblem(
        "is_palindrome",
        "Write `def is_palindrome(s: str) -> bool` that returns True when `s` reads the same "
        "forwards and backwards, ignoring case and any character that is not a letter or digit.",
        "def is_palindrome(s: str) -> bool:\n"
        "    kept = [c.lower() for c in s if c.isalnum()]\n"
        "    return kept == kept[::-1]\n",
        "assert is_palindrome('A man, a plan, a canal: Panama')\n"
        "assert not is_palindrome('hello')\n"
        "assert is_palindrome('')\n"
        "assert is_palindrome('No lemon, no melon')\n"
        "assert not is_palindrome('ab')\n",
    ),
    CodeProblem(
        "fizzbuzz",
        "Write `def fizzbuzz(n: int) -> list[str]` returning the strings for 1..n: 'Fizz' for "
        "multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for multiples of both, otherwise "
        "the number itself as a string.",
        "def fizzbuzz(n: int) -> list[str]:\n"
        "    out = []\n"
        "    for i in range(1, n + 1):\n"
        "        s = ('Fizz' if i % 3 == 0 else '') + ('Buzz' if i % 5 == 0 else '')\n"
        "        out.append(s or str(i))\n"
        "    return out\n",
        "assert fizzbuzz(5) == ['1', '2', 'Fizz', '4', 'Buzz']\n"
        "assert fizzbuzz(15)[-1] == 'FizzBuzz'\n"
        "assert fizzbuzz(0) == []\n"
        "assert len(fizzbuzz(100)) == 100\n",
    ),
    CodeProblem(
        "word_count",
        "Write `def word_count(text: str) -> dict[str, int]` that counts how often each word "
        "occurs. Words are separated by whitespace, compared in lower case, and leading or "
        "trailing punctuation (.,!?;:) is removed; empty words are skipped.",
        "def word_count(text: str) -> dict[str, int]:\n"
        "    counts: dict[str, int] = {}\n"
        "    for raw in text.split():\n"
        "        word = raw.strip('.,!?;:').lower()\n"
        "        if word:\n"
        "            counts[word] = counts.get(word, 0) + 1\n"
        "    return counts\n",
        "assert word_count('The cat and the hat.') == {'the': 2, 'cat': 1, 'and': 1, 'hat': 1}\n"
        "assert word_count('') == {}\n"
        "assert word_count('Hi! hi? HI') == {'hi': 3}\n"
        "assert word_count(' ... ') == {}\n",
    ),
    CodeProblem(
        "flatten",
        "Write `def flatten(items: list) -> list` that flattens arbitrarily nested lists into one "
        "list, keeping the order of the elements. Only lists are flattened; tuples and strings "
        "are kept as elements.",
        "def flatten(items: list) -> list:\n"
        "    out = []\n"
        "    for item in items:\n"
        "        if isinstance(item, list):\n"
        "            out.extend(flatten(item))\n"
        "        else:\n"
        "            out.append(item)\n"
        "    return out\n",
        "assert flatten([1, [2, [3, [4]], 5]]) == [1, 2, 3, 4, 5]\n"
        "assert flatten([]) == []\n"
        "assert flatten([[], [[]]]) == []\n"
        "assert flatten(['ab', (1, 2), [3]]) == ['ab', (1, 2), 3]\n",
    ),
    CodeProblem(
        "gcd",
        "Write `def gcd(a: int, b: int) -> int` returning the greatest common divisor of two "
        "integers (always non-negative; gcd(0, 0) is 0). Do not use the math module.",
        "def gcd(a: int, b: int) -> int:\n"
        "    a, b = abs(a), abs(b)\n"
        "    while b:\n"
        "        a, b = b, a % b\n"
        "    return a\n",
        "assert gcd(12, 18) == 6\n"
        "assert gcd(-4, 6) == 2\n"
        "assert gcd(0, 5) == 5\n"
        "assert gcd(0, 0) == 0\n"
        "assert gcd(17, 13) == 1\n",
    ),
    CodeProblem(
        "is_prime",
        "Write `def is_prime(n: int) -> bool` that returns True exactly when `n` is a prime "
        "number. It must be fast enough for n up to 10**9.",
        "def is_prime(n: int) -> bool:\n"
        "    if n < 2:\n"
        "        return False\n"
        "    i = 2\n"
        "    while i * i <= n:\n"
        "        if n % i == 0:\n"
        "            return False\n"
        "        i += 1\n"
        "    return True\n",
        "assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]\n"
        "assert not is_prime(-7)\n"
        "assert is_prime(999999937)\n"
        "assert not is_prime(999999938)\n",
    ),
    CodeProblem(
        "roman_to_int",
        "Write `def roman_to_int(s: str) -> int` that converts a Roman numeral (I, V, X, L, C, D, "
        "M, with subtractive pairs such as IV and CM) to an integer.",
        "def roman_to_int(s: str) -> int:\n"
        "    values = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n"
        "    total = 0\n"
        "    for i, c in enumerate(s):\n"
        "        v = values[c]\n"
        "        if i + 1 < len(s) and values[s[i + 1]] > v:\n"
        "            total -= v\n"
        "        else:\n"
        "            total += v\n"
        "    return total\n",
        "assert roman_to_int('III') == 3\n"
        "assert roman_to_int('IV') == 4\n"
        "assert roman_to_int('MCMXCIV') == 1994\n"
        "assert roman_to_int('LVIII') == 58\n",
    ),
    CodeProblem(
        "int_to_roman",
        "Write `def int_to_roman(n: int) -> str` that converts an integer from 1 to 3999 to a "
        "Roman numeral using subtractive notation (4 is 'IV', 900 is 'CM').",
        "def int_to_roman(n: int) -> str:\n"
        "    table = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'),\n"
        "             (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n"
        "    out = ''\n"
        "    for value, symbol in table:\n"
        "        while n >= value:\n"
        "            out += symbol\n"
        "            n -= value\n"
        "    return out\n",
        "assert int_to_roman(3) == 'III'\n"
        "assert int_to_roman(1994) == 'MCMXCIV'\n"
        "assert int_to_roman(3999) == 'MMMCMXCIX'\n"
        "assert int_to_roman(44) == 'XLIV'\n",
    ),
    CodeProblem(
        "run_length_encode",
        "Write `def run_length_encode(s: str) -> str` that replaces each run of a repeated "
        "character by the count followed by the character, e.g. 'aaabcc' -> '3a1b2c'.",
        "def run_length_encode(s: str) -> str:\n"
        "    out = []\n"
        "    i = 0\n"
        "    while i < len(s):\n"
        "        j = i\n"
        "        while j < len(s) and s[j] == s[i]:\n"
        "            j += 1\n"
        "        out.append(f'{j - i}{s[i]}')\n"
        "        i = j\n"
        "    return ''.join(out)\n",
        "assert run_length_encode('aaabcc') == '3a1b2c'\n"
        "assert run_length_encode('') == ''\n"
        "assert run_length_encode('x') == '1x'\n"
        "assert run_length_encode('aaaaaaaaaaaa') == '12a'\n",
    ),
    CodeProblem(
        "two_sum",
        "Write `def two_sum(nums: list[int], target: int) -> tuple[int, int] | None` returning "
        "the indices (i, j) with i < j and nums[i] + nums[j] == target, choosing the smallest j "
        "and then the smallest i; return None if there is no such pair.",
        "def two_sum(nums: list[int], target: int) -> tuple[int, int] | None:\n"
        "    first: dict[int, int] = {}\n"
        "    for j, x in enumerate(nums):\n"
        "        if target - x in first:\n"
        "            return (first[target - x], j)\n"
        "        first.setdefault(x, j)\n"
        "    return None\n",
        "assert two_sum([2, 7, 11, 15], 9) == (0, 1)\n"
        "assert two_sum([3, 2, 4], 6) == (1, 2)\n"
        "assert two_sum([1, 2], 7) is None\n"
        "assert two_sum([3, 3, 3], 6) == (0, 1)\n",
    ),
    CodeProblem(
        "balanced_brackets",
        "Write `def balanced_brackets(s: str) -> bool` that returns True when every (, [ and { "
        "in `s` is closed by the matching bracket in the right order. Other characters are "
        "ignored.",
        "def balanced_brackets(s: str) -> bool:\n"
        "    pairs = {')': '(', ']': '[', '}': '{'}\n"
        "    stack = []\n"
        "    for c in s:\n"
        "        if c in '([{':\n"
        "            stack.append(c)\n"
        "        elif c in pairs:\n"
        "            if not stack or stack.pop() != pairs[c]:\n"
        "                return False\n"
        "    return not stack\n",
        "assert balanced_brackets('([]{})')\n"
        "assert not balanced_brackets('([)]')\n"
        "assert not balanced_brackets('((')\n"
        "assert balanced_brackets('a(b)c')\n"
        "assert not balanced_brackets(')(')\n",
    ),
    CodeProblem(
        "merge_intervals",
        "Write `def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]` "
        "that merges overlapping or touching closed intervals and returns them sorted by start.",
        "def merge_intervals(intervals):\n"
        "    out = []\n"
        "    for start, end in sorted(intervals):\n"
        "        if out and start <= out[-1][1]:\n"
        "            out[-1] = (out[-1][0], max(out[-1][1], end))\n"
        "        else:\n"
        "            out.append((start, end))\n"
        "    return out\n",
        "assert merge_intervals([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]\n"
        "assert merge_intervals([(5, 7), (1, 5)]) == [(1, 7)]\n"
        "assert merge_intervals([]) == []\n"
        "assert merge_intervals([(1, 10), (2, 3)]) == [(1, 10)]\n",
    ),
    CodeProblem(
        "binary_search",
        "Write `def binary_search(items: list[int], target: int) -> int` that returns the index of "
        "`target` in the sorted list `items`, or -1 when it is absent. Use binary search.",
        "def binary_search(items: list[int], target: int) -> int:\n"
        "    lo, hi = 0, len(items) - 1\n"
        "    while lo <= hi:\n"
        "        mid = (lo + hi) // 2\n"
        "        if items[mid] == target:\n"
        "            return mid\n"
        "        if items[mid] < target:\n"
        "            lo = mid + 1\n"
        "        else:\n"
        "            hi = mid - 1\n"
        "    return -1\n",
        "assert binary_search([1, 3, 5, 7, 9], 7) == 3\n"
        "assert binary_search([1, 3, 5, 7, 9], 4) == -1\n"
        "assert binary_search([], 1) == -1\n"
        "assert binary_search(list(range(0, 1000, 2)), 998) == 499\n",
    ),
    CodeProblem(
        "caesar_cipher",
        "Write `def caesar_cipher(text: str, shift: int) -> str` that shifts every ASCII letter "
        "by `shift` places in the alphabet (wrapping around, keeping case) and leaves all other "
        "characters unchanged. `shift` may be negative or larger than 26.",
        "def caesar_cipher(text: str, shift: int) -> str:\n"
        "    out = []\n"
        "    for c in text:\n"
        "        if 'a' <= c <= 'z':\n"
        "            out.append(chr((ord(c) - 97 + shift) % 26 + 97))\n"
        "        elif 'A' <= c <= 'Z':\n"
        "            out.append(chr((ord(c) - 65 + shift) % 26 + 65))\n"
        "        else:\n"
        "            out.append(c)\n"
        "    return ''.join(out)\n",
        "assert caesar_cipher('abc', 1) == 'bcd'\n"
        "assert caesar_cipher('Hello, World!', 3) == 'Khoor, Zruog!'\n"
        "assert caesar_cipher('xyz', 29) == 'abc'\n"
        "assert caesar_cipher('bcd', -1) == 'abc'\n",
    ),
    CodeProblem(
        "anagram_groups",
        "Write `def anagram_groups(words: list[str]) -> list[list[str]]` that groups words that "
        "are anagrams of each other. Keep words in their input order inside each group, and "
        "order the groups by the position of their first word.",
        "def anagram_groups(words: list[str]) -> list[list[str]]:\n"
        "    groups: dict[str, list[str]] = {}\n"
        "    for w in words:\n"
        "        groups.setdefault(''.join(sorted(w)), []).append(w)\n"
        "    return list(groups.values())\n",
        "assert anagram_groups(['eat', 'tea', 'tan', 'ate', 'nat', 'bat']) == "
        "[['eat', 'tea', 'ate'], ['tan', 'nat'], ['bat']]\n"
        "assert anagram_groups([]) == []\n"
        "assert anagram_groups(['a']) == [['a']]\n",
    ),
    CodeProblem(
        "second_largest",
        "Write `def second_largest(nums: list[int]) -> int | None` returning the second largest "
        "distinct value in `nums`, or None if there are fewer than two distinct values.",
        "def second_largest(nums: list[int]) -> int | None:\n"
        "    distinct = sorted(set(nums))\n"
        "    return distinct[-2] if len(distinct) >= 2 else None\n",
        "assert second_largest([3, 1, 4, 1, 5]) == 4\n"
        "assert second_largest([5, 5, 5]) is None\n"
        "assert second_largest([]) is None\n"
        "assert second_largest([-2, -1]) == -2\n",
    ),
    CodeProblem(
        "chunk",
        "Write `def chunk(items: list, size: int) -> list[list]` that splits `items` into "
        "consecutive pieces of length `size` (the last may be shorter). Raise ValueError if "
        "`size` is less than 1.",
        "def chunk(items: list, size: int) -> list[list]:\n"
        "    if size < 1:\n"
        "        raise ValueError('size must be positive')\n"
        "    return [items[i:i + size] for i in range(0, len(items), size)]\n",
        "assert chunk([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]\n"
        "assert chunk([], 3) == []\n"
        "try:\n"
        "    chunk([1], 0)\n"
        "except ValueError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('chunk(size=0) must raise ValueError')\n",
    ),
    CodeProblem(
        "digit_sum",
        "Write `def digit_sum(n: int) -> int` that repeatedly sums the decimal digits of the "
        "absolute value of `n` until a single digit remains, and returns that digit.",
        "def digit_sum(n: int) -> int:\n"
        "    n = abs(n)\n"
        "    while n >= 10:\n"
        "        n = sum(int(d) for d in str(n))\n"
        "    return n\n",
        "assert digit_sum(38) == 2\n"
        "assert digit_sum(0) == 0\n"
        "assert digit_sum(-9875) == 2\n"
        "assert digit_sum(7) == 7\n",
    ),
    CodeProblem(
        "transpose",
        "Write `def transpose(matrix: list[list[int]]) -> list[list[int]]` returning the "
        "transpose of a rectangular matrix given as a list of rows. The transpose of [] is [].",
        "def transpose(matrix: list[list[int]]) -> list[list[int]]:\n"
        "    return [list(col) for col in zip(*matrix)]\n",
        "assert transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]\n"
        "assert transpose([[1]]) == [[1]]\n"
        "assert transpose([]) == []\n",
    ),
    CodeProblem(
        "longest_common_prefix",
        "Write `def longest_common_prefix(words: list[str]) -> str` returning the longest string "
        "that every word starts with ('' for an empty list).",
        "def longest_common_prefix(words: list[str]) -> str:\n"
        "    if not words:\n"
        "        return ''\n"
        "    prefix = words[0]\n"
        "    for w in words[1:]:\n"
        "        while not w.startswith(prefix):\n"
        "            prefix = prefix[:-1]\n"
        "    return prefix\n",
        "assert longest_common_prefix(['flower', 'flow', 'flight']) == 'fl'\n"
        "assert longest_common_prefix(['dog', 'car']) == ''\n"
        "assert longest_common_prefix([]) == ''\n"
        "assert longest_common_prefix(['same', 'same']) == 'same'\n",
    ),
    CodeProblem(
        "fibonacci",
        "Write `def fibonacci(n: int) -> int` returning the n-th Fibonacci number with "
        "fibonacci(0) == 0 and fibonacci(1) == 1. It must handle n = 300 instantly.",
        "def fibonacci(n: int) -> int:\n"
        "    a, b = 0, 1\n"
        "    for _ in range(n):\n"
        "        a, b = b, a + b\n"
        "    return a\n",
        "assert [fibonacci(i) for i in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]\n"
        "assert fibonacci(90) == 2880067194370816120\n"
        "assert fibonacci(300) % 1000 == 600\n",
    ),
    CodeProblem(
        "rotate_list",
        "Write `def rotate_list(items: list, k: int) -> list` returning a new list rotated to "
        "the right by `k` places (k may be negative or larger than the length).",
        "def rotate_list(items: list, k: int) -> list:\n"
        "    if not items:\n"
        "        return []\n"
        "    k %= len(items)\n"
        "    return items[-k:] + items[:-k] if k else list(items)\n",
        "assert rotate_list([1, 2, 3, 4, 5], 2) == [4, 5, 1, 2, 3]\n"
        "assert rotate_list([1, 2, 3], -1) == [2, 3, 1]\n"
        "assert rotate_list([1, 2, 3], 7) == [3, 1, 2]\n"
        "assert rotate_list([], 3) == []\n",
    ),
    CodeProblem(
        "count_vowels",
        "Write `def count_vowels(s: str) -> int` that counts the vowels a, e, i, o, u in `s`, "
        "in either case.",
        "def count_vowels(s: str) -> int:\n"
        "    return sum(1 for c in s.lower() if c in 'aeiou')\n",
        "assert count_vowels('Hello World') == 3\n"
        "assert count_vowels('') == 0\n"
        "assert count_vowels('AEIOUxyz') == 5\n"
        "assert count_vowels('rhythm') == 0\n",
    ),
    CodeProblem(
        "to_snake_case",
        "Write `def to_snake_case(name: str) -> str` that converts a CamelCase or camelCase "
        "identifier to snake_case: an underscore goes before each upper-case letter that follows "
        "a lower-case letter or digit, and everything is lower-cased.",
        "def to_snake_case(name: str) -> str:\n"
        "    out = []\n"
        "    for i, c in enumerate(name):\n"
        "        if c.isupper() and i > 0 and (name[i - 1].islower() or name[i - 1].isdigit()):\n"
        "            out.append('_')\n"
        "        out.append(c.lower())\n"
        "    return ''.join(out)\n",
        "assert to_snake_case('CamelCase') == 'camel_case'\n"
        "assert to_snake_case('camelCaseName') == 'camel_case_name'\n"
        "assert to_snake_case('simple') == 'simple'\n"
        "assert to_snake_case('version2Final') == 'version2_final'\n",
    ),
    CodeProblem(
        "matrix_multiply",
        "Write `def matrix_multiply(a: list[list[int]], b: list[list[int]]) -> list[list[int]]` "
        "returning the matrix product of `a` (n x m) and `b` (m x p).",
        "def matrix_multiply(a, b):\n"
        "    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]\n",
        "assert matrix_multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]\n"
        "assert matrix_multiply([[1, 0, 2]], [[1], [2], [3]]) == [[7]]\n"
        "assert matrix_multiply([[2]], [[3]]) == [[6]]\n",
    ),
    CodeProblem(
        "dedupe",
        "Write `def dedupe(items: list) -> list` that removes repeated elements, keeping the first "
        "occurrence of each and the original order. Elements are hashable.",
        "def dedupe(items: list) -> list:\n"
        "    seen = set()\n"
        "    out = []\n"
        "    for x in items:\n"
        "        if x not in seen:\n"
        "            seen.add(x)\n"
        "            out.append(x)\n"
        "    return out\n",
        "assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]\n"
        "assert dedupe([]) == []\n"
        "assert dedupe(['a', 'b', 'a']) == ['a', 'b']\n"
        "assert dedupe([1, 1, 1]) == [1]\n",
    ),
    CodeProblem(
        "parse_duration",
        "Write `def parse_duration(text: str) -> int` that converts a duration such as '1h30m', "
        "'45s' or '2h5s' (hours h, minutes m, seconds s, each optional but in that order) to "
        "seconds. Raise ValueError for anything else, including the empty string.",
        "import re\n\n"
        "def parse_duration(text: str) -> int:\n"
        "    m = re.fullmatch(r'(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?', text)\n"
        "    if not text or m is None:\n"
        "        raise ValueError(f'bad duration: {text!r}')\n"
        "    h, mi, s = (int(g) if g else 0 for g in m.groups())\n"
        "    return h * 3600 + mi * 60 + s\n",
        "assert parse_duration('1h30m') == 5400\n"
        "assert parse_duration('45s') == 45\n"
        "assert parse_duration('2h5s') == 7205\n"
        "for bad in ('', '5x', 'm5', '1m1h'):\n"
        "    try:\n"
        "        parse_duration(bad)\n"
        "    except ValueError:\n"
        "        continue\n"
        "    raise AssertionError(f'parse_duration({bad!r}) must raise ValueError')\n",
    ),
    CodeProblem(
        "max_subarray",
        "Write `def max_subarray(nums: list[int]) -> int` returning the largest sum of a "
        "non-empty contiguous slice of `nums` (which is non-empty).",
        "def max_subarray(nums: list[int]) -> int:\n"
        "    best = current = nums[0]\n"
        "    for x in nums[1:]:\n"
        "        current = max(x, current + x)\n"
        "        best = max(best, current)\n"
        "    return best\n",
        "assert max_subarray([-2, 1, -3, 4, -1, 2, 1, -5, 4]) == 6\n"
        "assert max_subarray([-3, -1, -2]) == -1\n"
        "assert max_subarray([5]) == 5\n"
        "assert max_subarray([1, 2, 3]) == 6\n",
    ),
    CodeProblem(
        "valid_ipv4",
        "Write `def valid_ipv4(address: str) -> bool` that returns True for a dotted-quad IPv4 "
        "address: four decimal parts from 0 to 255, no leading zeros (except '0' itself), no "
        "signs or spaces.",
        "def valid_ipv4(address: str) -> bool:\n"
        "    parts = address.split('.')\n"
        "    if len(parts) != 4:\n"
        "        return False\n"
        "    for p in parts:\n"
        "        if not p.isdigit() or not p.isascii() or (len(p) > 1 and p[0] == '0'):\n"
        "            return False\n"
        "        if int(p) > 255:\n"
        "            return False\n"
        "    return True\n",
        "assert valid_ipv4('192.168.0.1')\n"
        "assert not valid_ipv4('256.1.1.1')\n"
        "assert not valid_ipv4('1.2.3')\n"
        "assert not valid_ipv4('01.2.3.4')\n"
        "assert valid_ipv4('0.0.0.0')\n"
        "assert not valid_ipv4('1.2.3.-4')\n",
    ),
    CodeProblem(
        "histogram",
        "Write `def histogram(values: list[int]) -> str` that returns one line per distinct value "
        "in increasing order, formatted as '<value>: ' followed by one '*' per occurrence, "
        "lines joined with newlines and no trailing newline.",
        "def histogram(values: list[int]) -> str:\n"
        "    return '\\n'.join(f'{v}: ' + '*' * values.count(v) for v in sorted(set(values)))\n",
        "assert histogram([3, 1, 3, 2, 3]) == '1: *\\n2: *\\n3: ***'\n"
        "assert histogram([]) == ''\n"
        "assert histogram([-1, -1]) == '-1: **'\n",
    ),
)
