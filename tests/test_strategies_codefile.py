"""The code task file of our own (agent/tasks/data/functions.jsonl, written for this project,
not from the built-in bank): every reference solution passes its tests and its visible
examples, a wrong one fails, and the file reads as code tasks of the "file" suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.strategies import _check_code, visible_examples
from agent.tasks import get_suite
from agent.tasks.base import verify_code
from agent.tasks.code_bank import BANK
from tools.sandbox import Sandbox

PATH = Path(__file__).resolve().parents[1] / "agent" / "tasks" / "data" / "functions.jsonl"
SUITE = get_suite("file", tasks_file=PATH)
TASKS = SUITE.load("dev") + SUITE.load("train")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def test_the_file_has_at_least_30_code_tasks_not_from_the_bank() -> None:
    assert len(TASKS) >= 30 and all(t.kind == "code" for t in TASKS)
    assert len(SUITE.load("dev")) >= 24
    assert not {t.entry_point for t in TASKS} & {p.entry_point for p in BANK}


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.entry_point)
def test_reference_passes_tests_and_examples_and_a_wrong_one_fails(task, sandbox) -> None:
    examples = visible_examples(task.question)
    assert len(examples) >= 2
    behaviour, problem = _check_code(task.answer, task.entry_point, examples, sandbox)
    assert behaviour and behaviour[0] == len(examples), problem
    assert verify_code(task, task.answer, sandbox).correct
    wrong = f"def {task.entry_point}(*args, **kwargs):\n    return None\n"
    assert not verify_code(task, wrong, sandbox).correct
