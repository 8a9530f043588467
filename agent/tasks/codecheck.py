"""Verify a code answer where the answer cannot reach the verdict.

A solution and its tests never share a process. Two sandbox runs are connected by two pipes:

- the *solution* run executes the answer, then serves calls: it reads a function name and
  arguments (plain data), calls the function and writes back the result (plain data) or the
  name of the exception it raised;
- the *tests* run executes the task's tests, in which the entry point (and every other
  top-level function the answer defines) is a stub that forwards the call over the pipe and
  rebuilds the answer with `plaindata.decode`, which builds builtins only.

So whatever the solution does in its own process (exit early, patch builtins or `sys.modules`,
read its own files, inspect its caller's frame for the expected value, return an object whose
`__eq__` is always True, print a fake success line) touches nothing the tests use. The tests'
process never runs a line of the solution, and the success token it prints at the end was never
written where the solution can read it. The solution's only influence is the data it answers
with: getting the verdict requires computing the right values.

Limits of the form: arguments and results must be plain data (functions or class instances
cannot cross), and the solution's stdout is not part of the check.
"""

from __future__ import annotations

import ast
import os
import secrets
import threading
from pathlib import Path
from typing import Any

_CODEC = (Path(__file__).with_name("plaindata.py")).read_text(encoding="utf-8")

# Pipe ends are given to the two runs under these numbers' values as created; the programs
# learn them from the constants substituted below.
_WIRE = '''
import os as _os, struct as _struct, sys as _sys

if hasattr(_sys, "set_int_max_str_digits"):
    _sys.set_int_max_str_digits(0)


def _send(fd, message):
    data = dumps(message)
    data = _struct.pack(">Q", len(data)) + data
    view = memoryview(data)
    while view:
        view = view[_os.write(fd, view):]


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = _os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd):
    head = _read_exact(fd, 8)
    if head is None:
        return None
    (size,) = _struct.unpack(">Q", head)
    if size > MAX_MESSAGE_BYTES:
        raise NotPlainData("message too large")
    body = _read_exact(fd, size)
    return None if body is None else loads(body)
'''

_SOLUTION_MAIN = '''
_REQUESTS, _REPLIES = {requests}, {replies}
_ns = {{"__name__": "__solution__", "__builtins__": __builtins__}}
exec(compile({source!r}, "solution.py", "exec"), _ns)
while True:
    _msg = _recv(_REQUESTS)
    if _msg is None:
        break
    try:
        _args = [decode(a) for a in _msg["args"]]
        _kwargs = {{k: decode(v) for k, v in _msg["kwargs"].items()}}
        _result = _ns[_msg["name"]](*_args, **_kwargs)
        _reply = {{"ok": encode(_result), "args": [encode(a) for a in _args]}}
    except Exception as _exc:
        _reply = {{"error": [type(_exc).__name__, str(_exc)[:300]]}}
    _send(_REPLIES, _reply)
'''

_TESTS_MAIN = '''
import builtins as _builtins, traceback as _traceback

_REQUESTS, _REPLIES = {requests}, {replies}


class SolutionError(RuntimeError):
    """The solution's process failed to answer a call."""


def _raise_remote(name, message):
    cls = getattr(_builtins, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        raise cls(message)
    raise SolutionError(f"{{name}}: {{message}}"[:400])


def _refill(original, tagged):
    # Arguments mutated in place by the solution: copy the new contents into the caller's object.
    new = decode(tagged)
    if type(original) is list and type(new) is list:
        original[:] = new
    elif type(original) in (dict, set) and type(new) is type(original):
        original.clear()
        original.update(new)


def _remote(name):
    def call(*args, **kwargs):
        request = {{"name": name, "args": [encode(a) for a in args],
                   "kwargs": {{str(k): encode(v) for k, v in kwargs.items()}}}}
        try:
            _send(_REQUESTS, request)
        except OSError:
            raise SolutionError("the solution exited before the tests finished") from None
        reply = _recv(_REPLIES)
        if reply is None:
            raise SolutionError("the solution exited before the tests finished")
        if type(reply) is not dict:
            raise SolutionError("malformed reply from the solution")
        if "error" in reply:
            err = reply["error"]
            if type(err) is not list or len(err) != 2:
                raise SolutionError("malformed error from the solution")
            _raise_remote(err[0], str(err[1]))
        if set(reply) != {{"ok", "args"}} or type(reply["args"]) is not list:
            raise SolutionError("malformed reply from the solution")
        result = decode(reply["ok"])
        if len(reply["args"]) == len(args):
            for original, tagged in zip(args, reply["args"]):
                _refill(original, tagged)
        return result

    call.__name__ = call.__qualname__ = name
    return call


_ns = {{"__name__": "__tests__"}}
for _name in {names!r}:
    _ns[_name] = _remote(_name)
try:
    exec(compile({tests!r}, "tests", "exec"), _ns)
except BaseException as _exc:
    _where = [f for f in _traceback.extract_tb(_exc.__traceback__) if f.filename == "tests"]
    _line = f" (tests line {{_where[-1].lineno}}: {{(_where[-1].line or '').strip()[:160]}})" if _where else ""
    _sys.stderr.write(f"{{type(_exc).__name__}}: {{str(_exc)[:300]}}{{_line}}\\n")
    _sys.stderr.flush()
    _os._exit(1)
_sys.stdout.flush()
_os.write(1, {token!r}.encode() + b"\\n")
_os._exit(0)
'''


def solution_names(code: str) -> list[str] | str:
    """Top-level function and class names the answer defines, or a syntax error message."""
    try:
        tree = ast.parse(code, filename="solution.py")
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: the answer could not be parsed"
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return sorted(set(names))


def build_programs(code: str, tests: str, names: list[str], token: str, fds: dict[str, int]) -> tuple[str, str]:
    solution = _CODEC + _WIRE + _SOLUTION_MAIN.format(
        requests=fds["solution_in"], replies=fds["solution_out"], source=code
    )
    checker = _CODEC + _WIRE + _TESTS_MAIN.format(
        requests=fds["tests_out"], replies=fds["tests_in"], names=names, tests=tests, token=token
    )
    return solution, checker


def run_pair(sandbox: Any, code: str, tests: str, names: list[str], timeout_s: float | None):
    """Run solution and tests side by side; returns (solution_result, tests_result, token).

    Each run is given its two pipe ends (`give_fds`): the sandbox hands them to the child and
    closes its own copies, so either side sees end-of-file as soon as the other one is gone.
    """
    token = f"tests-passed-{secrets.token_hex(16)}"
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    fds = {"solution_in": req_r, "solution_out": rep_w, "tests_out": req_w, "tests_in": rep_r}
    solution, checker = build_programs(code, tests, names, token, fds)
    kwargs: dict[str, Any] = {} if timeout_s is None else {"timeout_s": timeout_s}
    results: dict[str, Any] = {}

    def go(key: str, program: str, give: tuple[int, int]) -> None:
        try:
            results[key] = sandbox.run(program, give_fds=give, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread below
            results[key] = exc

    side = threading.Thread(target=go, args=("solution", solution, (req_r, rep_w)), daemon=True)
    side.start()
    go("tests", checker, (req_w, rep_r))
    side.join()
    for key in ("tests", "solution"):
        if isinstance(results[key], BaseException):
            raise results[key]
    return results["solution"], results["tests"], token
