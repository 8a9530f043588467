"""Plain data across the verifier's process boundary: a tagged JSON form of Python builtins.

The code verifier (agent/tasks/codecheck.py) runs a solution and its tests in two different
sandbox processes. Values cross between them only in this form, and the tests' side rebuilds
them with `decode`, which can make nothing but builtins (None, bool, int, float, complex, str,
bytes, list, tuple, dict, set, frozenset). So an object with an `__eq__` that is always True, a
`str` subclass that lies, or any other object of the solution's never reaches the assertions:
they compare values the tests' process built itself.

This module has no imports beyond the standard library because its source is copied into both
sandbox programs; the encoder on the solution's side is untrusted (the solution can replace it),
which is why everything that matters is in `decode`.
"""

import json

MAX_DEPTH = 200
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class NotPlainData(TypeError):
    """A value that cannot cross the boundary (a function, a class instance, a file...)."""


def encode(value, depth=0):
    """The tagged form of `value`; subclasses of builtins are sent as their base value."""
    if depth > MAX_DEPTH:
        raise NotPlainData("value nested too deeply to send")
    d = depth + 1
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", bool(value)]
    if isinstance(value, int):
        return ["i", int.__repr__(value)]
    if isinstance(value, float):
        return ["f", float.__repr__(value)]
    if isinstance(value, complex):
        return ["c", [float.__repr__(value.real), float.__repr__(value.imag)]]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, (bytes, bytearray)):
        return ["y", bytes(value).hex()]
    if isinstance(value, list):
        return ["l", [encode(v, d) for v in list.__iter__(value)]]
    if isinstance(value, tuple):
        return ["t", [encode(v, d) for v in tuple.__iter__(value)]]
    if isinstance(value, dict):
        return ["d", [[encode(k, d), encode(v, d)] for k, v in dict.items(value)]]
    if isinstance(value, frozenset):
        return ["F", [encode(v, d) for v in frozenset.__iter__(value)]]
    if isinstance(value, set):
        return ["S", [encode(v, d) for v in set.__iter__(value)]]
    if hasattr(type(value), "__next__") and hasattr(type(value), "__iter__"):
        # A generator or iterator: sent as its items, rebuilt as an iterator over them.
        return ["g", [encode(v, d) for v in value]]
    raise NotPlainData(f"a value of type {type(value).__name__} is not plain data")


def decode(tagged, depth=0):
    """Rebuild a value from its tagged form, refusing anything that is not exactly that form."""
    if depth > MAX_DEPTH:
        raise NotPlainData("value nested too deeply")
    if type(tagged) is not list or not tagged or type(tagged[0]) is not str:
        raise NotPlainData("malformed value")
    tag, rest = tagged[0], tagged[1:]
    if tag == "n" and not rest:
        return None
    if len(rest) != 1:
        raise NotPlainData(f"malformed value with tag {tag[:10]!r}")
    body = rest[0]
    d = depth + 1
    if tag == "b" and type(body) is bool:
        return body
    if tag == "i" and type(body) is str:
        return int(body)
    if tag == "f" and type(body) is str:
        return float(body)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(p) is str for p in body):
        return complex(float(body[0]), float(body[1]))
    if tag == "s" and type(body) is str:
        return body
    if tag == "y" and type(body) is str:
        return bytes.fromhex(body)
    if type(body) is not list:
        raise NotPlainData(f"malformed value with tag {tag[:10]!r}")
    if tag == "l":
        return [decode(v, d) for v in body]
    if tag == "t":
        return tuple(decode(v, d) for v in body)
    if tag == "g":
        return iter([decode(v, d) for v in body])
    if tag == "S":
        return {decode(v, d) for v in body}
    if tag == "F":
        return frozenset(decode(v, d) for v in body)
    if tag == "d":
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise NotPlainData("malformed dict entry")
            out[decode(pair[0], d)] = decode(pair[1], d)
        return out
    raise NotPlainData(f"unknown value tag {tag[:10]!r}")


def dumps(message):
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def loads(data):
    if len(data) > MAX_MESSAGE_BYTES:
        raise NotPlainData("message too large")
    return json.loads(data.decode("utf-8"))
