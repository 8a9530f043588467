"""User JSONL task files: parsing, default splits, one clear error for every bad line."""

from __future__ import annotations

import json
import random

import pytest

from agent.errors import ConfigError
from agent.tasks import get_suite, read_task_file, self_propose_variation
from agent.tasks.userfile import default_split
from tests.test_tasks_code import LocalRunner


def _write(tmp_path, rows, name="mine.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


QA = {"id": "q1", "question": "What is 6 * 7?", "answer": 42, "split": "train"}
WORD = {"id": "q2", "question": "Capital of France?", "answer": "Paris", "split": "dev"}
CODE = {
    "id": "c1",
    "prompt": "Write `def double(x)` returning 2 * x.",
    "entry_point": "double",
    "tests": ["assert double(2) == 4", "assert double(-1) == -2"],
    "split": "test",
}


def test_reads_both_forms(tmp_path):
    path = _write(tmp_path, [QA, "", WORD, CODE])
    suite = get_suite("file", tasks_file=path)
    train, dev, test = (suite.load(s) for s in ("train", "dev", "test"))
    assert [t.id for t in train] == ["file/train/mine:q1"]
    assert train[0].answer == "42" and train[0].kind == "qa" and train[0].origin == "user"
    assert dev[0].answer == "Paris"
    code = test[0]
    assert code.kind == "code" and code.entry_point == "double"
    assert code.tests == "assert double(2) == 4\nassert double(-1) == -2"
    assert code.meta["user_id"] == "c1" and code.meta["source_file"] == "mine"
    # Fresh copies each load, so two database sessions never share an instance.
    assert suite.load("train")[0] is not train[0]


def test_verify_numeric_exact_and_code(tmp_path):
    suite = get_suite("file", tasks_file=_write(tmp_path, [QA, WORD, CODE]))
    qa, word, code = suite.load("train")[0], suite.load("dev")[0], suite.load("test")[0]
    assert suite.verify(qa, "6 * 7 = 42").correct
    assert not suite.verify(qa, "The answer is 41").correct
    assert suite.verify(word, "The answer is: paris.").correct
    assert not suite.verify(word, "Lyon").correct
    runner = LocalRunner()
    assert suite.verify(code, "```python\ndef double(x):\n    return x + x\n```", sandbox=runner).correct
    assert not suite.verify(code, "def double(x):\n    return x\n", sandbox=runner).correct
    assert self_propose_variation(qa, random.Random(0)) is None


def test_default_split_depends_on_id_only(tmp_path):
    rows = [{"id": f"t{i}", "question": f"{i} + 1?", "answer": i + 1} for i in range(200)]
    tasks = read_task_file(_write(tmp_path, rows))
    splits = {t.meta["user_id"]: t.split for t in tasks}
    assert set(splits.values()) == {"train", "dev"}
    assert 20 <= sum(s == "dev" for s in splits.values()) <= 60  # ~20% of 200
    # Dropping most lines moves no task between splits.
    fewer = read_task_file(_write(tmp_path, rows[:7], name="mine.jsonl"))
    assert all(splits[t.meta["user_id"]] == t.split for t in fewer)
    assert all(t.split == default_split(t.meta["user_id"]) for t in tasks)


def test_every_bad_line_is_reported_once_and_nothing_loaded(tmp_path):
    rows = [
        QA,
        "{not json",
        [1, 2],
        {"id": "a", "question": "x?"},
        {"id": "b", "question": "x?", "answer": "1", "anwser": "1"},
        {"id": "c", "question": "q", "answer": "1", "prompt": "p"},
        {"id": "d", "prompt": "p", "entry_point": "not valid", "tests": "assert True"},
        {"id": "e", "prompt": "p", "entry_point": "f", "tests": "assert ("},
        {"id": "f", "question": "q", "answer": "1", "split": "validation"},
        {"id": "q1", "question": "again", "answer": "2"},
        {"question": "no id", "answer": "1"},
        {"id": "g", "question": "q", "answer": True},
    ]
    path = _write(tmp_path, rows)
    with pytest.raises(ConfigError) as info:
        read_task_file(path)
    message = str(info.value)
    assert str(path) in message and "nothing from it was loaded" in message
    expected = {
        2: "not valid JSON",
        3: "expected a JSON object, got list",
        4: '"answer" must be a string or a number',
        5: "unknown field(s) 'anwser'",
        6: "mixes a question task",
        7: '"entry_point" must be a Python function name',
        8: '"tests" is not valid Python',
        9: '"split" must be one of',
        10: "id 'q1' already used on line 1",
        11: '"id" must be a non-empty string',
        12: '"answer" must be a string or a number',
    }
    for line_no, fragment in expected.items():
        assert any(
            ln.strip().startswith(f"line {line_no}:") and fragment in ln for ln in message.splitlines()
        ), (line_no, fragment, message)
    assert "line 1:" not in message


def test_long_error_lists_are_capped(tmp_path):
    path = _write(tmp_path, ["{bad"] * 30)
    with pytest.raises(ConfigError, match=r"30 problem\(s\)[\s\S]*and 10 more"):
        read_task_file(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "does not exist"), (b"\xff\xfe\x00", "not UTF-8"), (b"\n\n", "contains no tasks")],
)
def test_file_level_problems(tmp_path, content, fragment):
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=fragment):
        get_suite("file", tasks_file=path)


def test_ids_from_different_files_do_not_collide(tmp_path):
    a = read_task_file(_write(tmp_path, [QA], name="a.jsonl"))
    b = read_task_file(_write(tmp_path, [QA], name="b.jsonl"))
    assert a[0].id != b[0].id


def test_examples_in_the_docs_load_and_verify(tmp_path):
    from pathlib import Path
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "tasks.md").read_text()
    lines = [ln for block in re.findall(r"```json\n(.*?)```", doc, re.S) for ln in block.splitlines()]
    assert len(lines) == 4
    suite = get_suite("file", tasks_file=_write(tmp_path, lines, name="docs.jsonl"))
    tasks = {t.meta["user_id"]: t for s in ("train", "dev", "test") for t in suite.load(s)}
    assert set(tasks) == {"shop-1", "geo-1", "dbl", "clamp"}
    assert suite.verify(tasks["shop-1"], "2*3 + 3*5 = 21").correct
    assert suite.verify(tasks["geo-1"], "The answer is Canberra.").correct
    runner = LocalRunner()
    assert suite.verify(tasks["dbl"], "def double(x: int) -> int:\n    return 2 * x", sandbox=runner).correct
    clamp = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))"
    assert suite.verify(tasks["clamp"], clamp, sandbox=runner).correct
