"""What every suite offers, and the verifiers they share.

A suite hands out `memory.models.Task` rows for a split and judges answers to them. Splits are
fixed functions of the task itself (its index or its content, hashed with a suite-specific
salt), never of call order, so a dev or test task cannot turn up as train in another run.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.errors import ConfigError
from agent.tasks.answers import extract_answer, numbers_match, parse_number, text_matches
from agent.tasks.codecheck import run_pair, solution_names
from memory.models import SPLITS, Task


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reward: float
    detail: str  # one line a human (or the refine phase) can act on


class SandboxResultLike(Protocol):
    ok: bool
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    limit: str | None


@runtime_checkable
class SandboxLike(Protocol):
    """`tools.sandbox.Sandbox`, or anything with the same `run`, e.g. a fake in tests.

    `run` must accept `give_fds`: descriptors handed to the child under the same numbers and
    closed in the caller once the child has started (the code verifier's pipes).
    """

    def run(self, code: str, **kwargs: Any) -> SandboxResultLike: ...


class Suite(Protocol):
    name: str

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Task]:
        """Tasks of `split`, the same list for the same arguments."""
        ...

    def verify(self, task: Task, answer: str, *, sandbox: SandboxLike | None = None) -> Verdict:
        """Judge a model's final output for `task`."""
        ...

    def propose_variation(self, task: Task, rng: random.Random) -> Task | None:
        """A new train task varying `task` that can still be verified, or None."""
        ...


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def stable_unit(salt: str, key: str) -> float:
    """A number in [0, 1) fixed by (salt, key): the same on every machine and Python version."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def ordered(tasks: list[Task], limit: int | None, seed: int) -> list[Task]:
    """Shuffle by `seed` (seed 0 keeps the suite's natural order) and cut to `limit`."""
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    items = list(tasks)
    if seed:
        random.Random(seed).shuffle(items)
    return items if limit is None else items[:limit]


def verify_qa(task: Task, output: str) -> Verdict:
    """Numeric comparison when the reference is a number, formatting-tolerant exact match otherwise."""
    if parse_number(task.answer) is not None:
        got = extract_answer(output)
        if not got:
            return Verdict(False, 0.0, f"no number found in the answer; expected {task.answer}")
        if numbers_match(got, task.answer):
            return Verdict(True, 1.0, f"answer {got} matches {task.answer}")
        return Verdict(False, 0.0, f"answer {got} does not match expected {task.answer}")
    if text_matches(output, task.answer):
        return Verdict(True, 1.0, f"answer matches {task.answer!r}")
    shown = output.strip().splitlines()[-1][:80] if output.strip() else ""
    return Verdict(False, 0.0, f"answer {shown!r} does not match expected {task.answer!r}")


_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(output: str, entry_point: str = "") -> str:
    """The Python program in a model's answer.

    Fenced blocks win over surrounding prose. With several blocks, the last one defining
    `entry_point` is taken (models often show a draft, then the fix); failing that, all
    Python blocks are joined, since helpers and the main function may be split across them.
    """
    blocks = [
        (lang.lower(), body)
        for lang, body in _FENCE_RE.findall(output)
        if lang.lower() in ("", "python", "py", "python3")
    ]
    if not blocks:
        return output.strip() + "\n"
    if entry_point:
        pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
        defining = [body for _, body in blocks if pattern.search(body)]
        if defining:
            return defining[-1].rstrip() + "\n"
    return "\n\n".join(body.rstrip() for _, body in blocks) + "\n"


def _last_lines(text: str, n: int = 3, width: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[-width:]


def verify_code(
    task: Task, output: str, sandbox: SandboxLike | None, timeout_s: float | None = None
) -> Verdict:
    """Run the extracted solution and the task's tests in two sandbox processes.

    See agent/tasks/codecheck.py: the tests call the solution over a pipe and compare plain
    data they rebuilt themselves, so nothing the solution does in its own process (early
    exits, patched builtins, lying `__eq__`, reading its files) can make a test pass.
    """
    if sandbox is None:
        raise ValueError(
            f"task {task.id} is verified by running tests; pass sandbox=Sandbox(settings.sandbox)"
        )
    code = extract_code(output, task.entry_point)
    if task.entry_point and not re.search(
        rf"\b(?:def|class)\s+{re.escape(task.entry_point)}\b|\b{re.escape(task.entry_point)}\s*=",
        code,
    ):
        return Verdict(False, 0.0, f"the answer does not define `{task.entry_point}`")
    names = solution_names(code)
    if isinstance(names, str):
        return Verdict(False, 0.0, f"tests failed: {names}")
    if task.entry_point and task.entry_point not in names:
        names.append(task.entry_point)
    solution, tests, token = run_pair(sandbox, code, task.tests, names, timeout_s)
    if tests.timed_out or solution.timed_out:
        return Verdict(False, 0.0, "timed out while running the tests")
    if tests.ok and token in tests.stdout.splitlines():
        return Verdict(True, 1.0, "all tests passed")
    if solution.limit:
        return Verdict(False, 0.0, f"stopped by the sandbox: {solution.limit} limit")
    if tests.limit:
        return Verdict(False, 0.0, f"stopped by the sandbox: {tests.limit} limit")
    failure = _last_lines(tests.stderr, n=1) or f"exit code {tests.exit_code}"
    if not solution.ok and solution.stderr.strip():
        failure += f" | solution: {_last_lines(solution.stderr, n=1)}"
    return Verdict(False, 0.0, f"tests failed: {failure}")
