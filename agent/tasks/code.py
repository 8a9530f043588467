"""The built-in "code" suite: write a Python function, verified by unit tests in the sandbox.

Splits are fixed by name: tasks are ranked by sha256("code-split-v1" NUL entry_point); the first
six are test, the next six dev, the rest train. A task added to the bank can shift that
boundary, so tests/test_tasks_code.py pins the held-out names: moving a task between splits
has to be a deliberate change (and means stored results on it are no longer held out).
"""

from __future__ import annotations

import random
from functools import cache

from agent.tasks.base import SandboxLike, Verdict, check_split, ordered, stable_unit, verify_code
from agent.tasks.code_bank import BANK
from memory.models import Task

TEST_SIZE = 6
DEV_SIZE = 6
_SPLIT_SALT = "code-split-v1"


@cache
def split_table() -> dict[str, str]:
    ranked = sorted(BANK, key=lambda p: stable_unit(_SPLIT_SALT, p.entry_point))
    table = {}
    for rank, problem in enumerate(ranked):
        if rank < TEST_SIZE:
            table[problem.entry_point] = "test"
        elif rank < TEST_SIZE + DEV_SIZE:
            table[problem.entry_point] = "dev"
        else:
            table[problem.entry_point] = "train"
    return table


class CodeSuite:
    name = "code"

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Task]:
        check_split(split)
        table = split_table()
        tasks = [
            Task(
                id=f"code/{split}/{p.entry_point}",
                suite="code",
                split=split,
                kind="code",
                question=p.prompt,
                answer=p.solution,
                tests=p.tests,
                entry_point=p.entry_point,
                meta={"solution": p.solution},
            )
            for p in BANK
            if table[p.entry_point] == split
        ]
        return ordered(tasks, limit, seed)

    def verify(self, task: Task, answer: str, *, sandbox: SandboxLike | None = None) -> Verdict:
        return verify_code(task, answer, sandbox)

    def propose_variation(self, task: Task, rng: random.Random) -> Task | None:
        # A changed specification needs new tests, and tests written by the model that is
        # being graded would let it grade itself.
        return None
