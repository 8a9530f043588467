"""The code suite: code extraction, verification through a sandbox-like runner, the real sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from agent.tasks import extract_code, get_suite
from agent.tasks.code import CodeSuite, split_table
from agent.tasks.code_bank import BANK


@dataclass
class RunResult:
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    limit: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def _close(fds) -> None:
    for fd in fds:
        os.close(fd)


class LocalRunner:
    """Runs trusted test code in a plain subprocess, with the sandbox's `run` signature
    (including `give_fds`: inherited by the child, closed here once it started)."""

    def __init__(self) -> None:
        self.programs: list[str] = []
        self.kwargs: list[dict] = []

    def run(self, code: str, **kwargs) -> RunResult:
        self.programs.append(code)
        self.kwargs.append(kwargs)
        give = tuple(kwargs.get("give_fds", ()))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, pass_fds=give,
        )
        _close(give)
        try:
            out, err = proc.communicate(code, timeout=kwargs.get("timeout_s", 10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return RunResult("", "", -9, timed_out=True, limit="timeout")
        return RunResult(out, err, proc.returncode)


class CannedRunner:
    def __init__(self, result: RunResult) -> None:
        self.result = result

    def run(self, code: str, **kwargs) -> RunResult:
        _close(kwargs.get("give_fds", ()))
        return self.result


def _all_tasks():
    suite = CodeSuite()
    return [t for split in ("train", "dev", "test") for t in suite.load(split)]


def test_bank_size_and_splits():
    tasks = _all_tasks()
    assert len(tasks) == len(BANK) >= 30
    assert len({t.entry_point for t in tasks}) == len(tasks)
    by_split = {s: sorted(t.entry_point for t in tasks if t.split == s) for s in ("dev", "test")}
    # Pinned on purpose: moving a task out of dev/test must be a visible, deliberate change.
    assert by_split["test"] == sorted(
        ["is_palindrome", "fizzbuzz", "binary_search", "caesar_cipher", "chunk", "dedupe"]
    )
    assert by_split["dev"] == sorted(
        ["word_count", "is_prime", "run_length_encode", "merge_intervals", "count_vowels",
         "matrix_multiply"]
    )
    assert all(t.id == f"code/{t.split}/{t.entry_point}" and t.kind == "code" for t in tasks)
    assert split_table() is split_table()


def test_every_reference_solution_passes_and_a_stub_fails():
    runner = LocalRunner()
    suite = CodeSuite()
    for task in _all_tasks():
        good = suite.verify(task, f"Here you go:\n```python\n{task.answer}```", sandbox=runner)
        assert good.correct and good.reward == 1.0, (task.id, good.detail)
        stub = f"def {task.entry_point}(*args, **kwargs):\n    return None\n"
        bad = suite.verify(task, stub, sandbox=runner)
        assert not bad.correct and bad.reward == 0.0, task.id
        assert bad.detail.startswith("tests failed"), (task.id, bad.detail)


def test_failure_detail_names_the_error():
    task = next(t for t in _all_tasks() if t.entry_point == "gcd")
    verdict = CodeSuite().verify(task, "def gcd(a, b):\n    return a * b\n", sandbox=LocalRunner())
    assert not verdict.correct and "AssertionError" in verdict.detail


def test_early_exit_does_not_count_as_passing():
    task = next(t for t in _all_tasks() if t.entry_point == "gcd")
    sneaky = "import sys\ndef gcd(a, b):\n    return 0\nsys.exit(0)\n"
    verdict = CodeSuite().verify(task, sneaky, sandbox=LocalRunner())
    assert not verdict.correct and "exited before" in verdict.detail


def test_missing_entry_point_is_reported_without_running():
    task = next(t for t in _all_tasks() if t.entry_point == "gcd")
    runner = LocalRunner()
    verdict = CodeSuite().verify(task, "def greatest(a, b):\n    return 1\n", sandbox=runner)
    assert not verdict.correct and "`gcd`" in verdict.detail
    assert runner.programs == []


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        (RunResult("", "", -9, timed_out=True, limit="timeout"), "timed out"),
        (RunResult("", "MemoryError", 1, limit="memory"), "memory limit"),
        (RunResult("", "", 1), "exit code 1"),
    ],
)
def test_sandbox_outcomes_map_to_verdicts(result, fragment):
    task = next(t for t in _all_tasks() if t.entry_point == "gcd")
    verdict = CodeSuite().verify(task, task.answer, sandbox=CannedRunner(result))
    assert not verdict.correct and fragment in verdict.detail


def test_verify_without_sandbox_is_a_clear_error():
    task = _all_tasks()[0]
    with pytest.raises(ValueError, match="sandbox"):
        CodeSuite().verify(task, task.answer)


def test_extract_code_variants():
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1\n"
    fenced = "Sure!\n```python\ndef f():\n    return 2\n```\nThat's it."
    assert extract_code(fenced, "f") == "def f():\n    return 2\n"
    draft_then_fix = "```python\ndef f():\n    return 0\n```\nOops, fixed:\n```py\ndef f():\n    return 3\n```"
    assert extract_code(draft_then_fix, "f") == "def f():\n    return 3\n"
    helper_split = "```python\ndef helper():\n    return 4\n```\n```python\ndef g():\n    return helper()\n```"
    assert "def helper" in extract_code(helper_split, "f") and "def g" in extract_code(helper_split, "f")
    shell_only = "```bash\npip install x\n```\n```python\ndef f():\n    return 5\n```"
    assert "pip" not in extract_code(shell_only, "f")
    unterminated = "```python\ndef f():\n    return 6\n"
    assert extract_code(unterminated, "f") == "def f():\n    return 6\n"


def test_code_suite_has_no_self_proposed_variants():
    import random

    task = CodeSuite().load("train", limit=1)[0]
    assert get_suite("code").propose_variation(task, random.Random(0)) is None


@pytest.mark.integration
def test_reference_and_wrong_solutions_in_the_real_sandbox():
    import tools.sandbox as sandbox_module
    from agent.config import SandboxSettings

    sandbox = sandbox_module.Sandbox(SandboxSettings(timeout_s=20))
    suite = CodeSuite()
    for task in suite.load("dev"):
        good = suite.verify(task, f"```python\n{task.answer}```", sandbox=sandbox)
        assert good.correct, (task.id, good.detail)
        bad = suite.verify(task, f"def {task.entry_point}(*a):\n    return None\n", sandbox=sandbox)
        assert not bad.correct, task.id
    looping = next(t for t in suite.load("train") if t.entry_point == "gcd")
    hang = "def gcd(a, b):\n    while True:\n        pass\n"
    verdict = CodeSuite().verify(looping, hang, sandbox=sandbox_module.Sandbox(
        SandboxSettings(timeout_s=1, cpu_s=2)))
    assert not verdict.correct and ("timed out" in verdict.detail or "limit" in verdict.detail)
