"""Task suites and their verifiers.

`get_suite(name)` returns one of:
- "gsm8k": grade-school maths word problems with a fixed dev split (agent/tasks/gsm8k.py);
- "arith": unlimited procedural arithmetic word problems (agent/tasks/arith.py);
- "code": Python function-writing tasks checked by unit tests in the sandbox (agent/tasks/code.py);
- "file": the user's JSONL task file (agent/tasks/userfile.py, format in docs/tasks.md).

How a task is solved follows its `kind`, not its suite: a "code" task from any suite or file is
solved by writing the function (agent/strategies.py). agent/tasks/data/functions.jsonl is a code
task file of our own (32 functions with doctest examples and hidden tests) for `--tasks`.
"""

from __future__ import annotations

import random
from pathlib import Path

from agent.errors import ConfigError
from agent.tasks.answers import extract_answer, numbers_match
from agent.tasks.arith import ArithSuite
from agent.tasks.base import SandboxLike, Suite, Verdict, extract_code
from agent.tasks.code import CodeSuite
from agent.tasks.gsm8k import GSM8KSuite
from agent.tasks.userfile import FileSuite, read_task_file
from memory.models import Task

__all__ = [
    "SUITE_NAMES",
    "SandboxLike",
    "Suite",
    "Verdict",
    "extract_answer",
    "extract_code",
    "get_suite",
    "numbers_match",
    "read_task_file",
    "self_propose_variation",
]

SUITE_NAMES = ("gsm8k", "arith", "code", "file")
_BUILT_IN: dict[str, type] = {"gsm8k": GSM8KSuite, "arith": ArithSuite, "code": CodeSuite}


def get_suite(name: str, *, tasks_file: Path | None = None) -> Suite:
    """The suite called `name`; "file" reads (and fully validates) `tasks_file` right away."""
    if name == "file":
        if tasks_file is None:
            raise ConfigError('suite "file" needs a tasks file: pass --tasks FILE.jsonl')
        return FileSuite(Path(tasks_file))
    if tasks_file is not None:
        raise ConfigError(f'--tasks is read by suite "file" only; got suite {name!r}')
    if name not in _BUILT_IN:
        raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_NAMES)}")
    return _BUILT_IN[name]()


def self_propose_variation(task: Task, rng: random.Random) -> Task | None:
    """A verifiable train-split variant of `task` (origin "self-proposed"), or None.

    Only procedural suites can say what the right answer to a changed task is; the others, and
    any task outside the train split, return None.
    """
    suite = _BUILT_IN.get(task.suite)
    if suite is None:
        return None
    return suite().propose_variation(task, rng)
