"""The "file" suite: the user's own tasks from a JSONL file (`--tasks FILE.jsonl`).

The format is documented in docs/tasks.md. The whole file is validated before any task is
returned: every bad line is reported in one `ConfigError` naming the file, the line number and
what is wrong, and nothing from the file is used, so a half-read file never reaches the store.

Lines without a "split" get one from their id: sha256("file-split-v1" NUL id) below 0.2 means
dev, otherwise train. It depends on the id alone, so adding or removing other lines never moves
a task between splits; "test" is only ever chosen explicitly.
"""

from __future__ import annotations

import json
import keyword
import random
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.tasks.base import (
    SandboxLike,
    Verdict,
    check_split,
    ordered,
    stable_unit,
    verify_code,
    verify_qa,
)
from memory.models import SPLITS, Task

DEV_FRACTION = 0.2
MAX_REPORTED = 20
_SPLIT_SALT = "file-split-v1"
_QA_KEYS = {"id", "question", "answer", "split", "meta"}
_CODE_KEYS = {"id", "prompt", "entry_point", "tests", "solution", "split", "meta"}


def default_split(native_id: str) -> str:
    return "dev" if stable_unit(_SPLIT_SALT, native_id) < DEV_FRACTION else "train"


def _text(row: dict[str, Any], key: str, problems: list[str]) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f'"{key}" must be a non-empty string')
        return ""
    return value


def _parse_line(row: Any, stem: str) -> tuple[Task | None, list[str]]:
    if not isinstance(row, dict):
        return None, [f"expected a JSON object, got {type(row).__name__}"]
    problems: list[str] = []

    raw_id = row.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        problems.append('"id" must be a non-empty string or an integer')
        native = ""
    else:
        native = str(raw_id).strip()

    is_code = "prompt" in row or "entry_point" in row or "tests" in row
    is_qa = "question" in row or "answer" in row
    if is_code and is_qa:
        return None, problems + [
            'mixes a question task ("question"/"answer") with a code task '
            '("prompt"/"entry_point"/"tests"); use one form per line'
        ]
    if not is_code and not is_qa:
        return None, problems + [
            'needs either "question" and "answer", or "prompt", "entry_point" and "tests"'
        ]
    allowed = _CODE_KEYS if is_code else _QA_KEYS
    unknown = sorted(set(row) - allowed)
    if unknown:
        problems.append(
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
        )

    split = row.get("split")
    if split is not None and split not in SPLITS:
        problems.append(f'"split" must be one of {", ".join(SPLITS)}, got {split!r}')
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        problems.append('"meta" must be a JSON object')

    fields: dict[str, Any] = {}
    if is_code:
        fields["question"] = _text(row, "prompt", problems)
        entry = row.get("entry_point")
        if not isinstance(entry, str) or not entry.isidentifier() or keyword.iskeyword(entry):
            problems.append('"entry_point" must be a Python function name')
        fields["entry_point"] = entry if isinstance(entry, str) else ""
        tests = row.get("tests")
        if isinstance(tests, list) and tests and all(isinstance(t, str) and t.strip() for t in tests):
            tests = "\n".join(tests)
        if not isinstance(tests, str) or not tests.strip():
            problems.append('"tests" must be a non-empty string or a list of non-empty strings')
            tests = ""
        else:
            try:
                compile(tests, f"{stem} tests", "exec")
            except SyntaxError as exc:
                problems.append(f'"tests" is not valid Python ({exc.msg}, line {exc.lineno})')
        fields["tests"] = tests
        solution = row.get("solution", "")
        if not isinstance(solution, str):
            problems.append('"solution" must be a string')
            solution = ""
        fields["answer"] = solution
        fields["kind"] = "code"
    else:
        fields["question"] = _text(row, "question", problems)
        answer = row.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            problems.append('"answer" must be a string or a number')
            answer = ""
        elif isinstance(answer, str) and not answer.strip():
            problems.append('"answer" must not be empty')
        fields["answer"] = str(answer).strip()
        fields["kind"] = "qa"

    if problems:
        return None, problems
    split = split or default_split(native)
    return (
        Task(
            # The file's stem keeps two files that both number their tasks 1, 2, 3 apart.
            id=f"file/{split}/{stem}:{native}",
            suite="file",
            split=split,
            origin="user",
            meta={**meta, "source_file": stem, "user_id": native},
            **fields,
        ),
        [],
    )


def read_task_file(path: Path) -> list[Task]:
    """All tasks in a user JSONL file, or a ConfigError listing every invalid line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"tasks file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"tasks file {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"tasks file {path} cannot be read: {exc.strerror}") from None

    tasks: list[Task] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            errors.append(f"line {line_no}: JSON nested too deeply to read; a task is a flat object")
            continue
        task, problems = _parse_line(row, path.stem)
        if problems:
            errors.extend(f"line {line_no}: {p}" for p in problems)
            continue
        assert task is not None
        native = task.meta["user_id"]
        if native in first_line:
            errors.append(f"line {line_no}: id {native!r} already used on line {first_line[native]}")
            continue
        first_line[native] = line_no
        tasks.append(task)

    if errors:
        shown = errors[:MAX_REPORTED]
        more = len(errors) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise ConfigError(
            f"tasks file {path} has {len(errors)} problem(s); nothing from it was loaded. "
            f"Fix these lines (format: docs/tasks.md):\n  " + "\n  ".join(shown) + tail
        )
    if not tasks:
        raise ConfigError(f"tasks file {path} contains no tasks (format: docs/tasks.md)")
    return tasks


class FileSuite:
    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tasks = read_task_file(self.path)

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Task]:
        check_split(split)
        # Copies: callers add these to database sessions, which must not share one instance.
        return ordered([t.model_copy() for t in self.tasks if t.split == split], limit, seed)

    def verify(self, task: Task, answer: str, *, sandbox: SandboxLike | None = None) -> Verdict:
        if task.kind == "code":
            return verify_code(task, answer, sandbox)
        return verify_qa(task, answer)

    def propose_variation(self, task: Task, rng: random.Random) -> Task | None:
        # User tasks have no generator behind them, so a variant could not be checked.
        return None
