"""GSM8K grade-school maths (MIT licence, data/LICENSE), shipped inside the package.

Splits:
- `dev`: exactly `DEV_SIZE` items carved out of the original train file. Every train item gets
  the key sha256("gsm8k-dev-v1" NUL "<index>" NUL "<question>"); the 500 smallest keys form dev.
  The choice depends only on the data, so it is identical on every machine and run.
- `train`: the remaining original train items.
- `test`: the original test file, meant for final numbers only.

Ids are "gsm8k/<split>/<index>", where index is the 0-based line number in the original file
(train.jsonl for train and dev, test.jsonl for test), so an id always points at the same item.
"""

from __future__ import annotations

import json
import random
import re
from functools import cache
from importlib import resources

from agent.errors import IntegrityError
from agent.tasks.answers import canonical_number
from agent.tasks.base import Verdict, SandboxLike, check_split, ordered, stable_unit, verify_qa
from memory.models import Task

DEV_SIZE = 500
_DEV_SALT = "gsm8k-dev-v1"
_CALC_RE = re.compile(r"<<[^<>]*>>")


def _split_answer(raw: str, where: str) -> tuple[str, str]:
    solution, sep, final = raw.rpartition("####")
    number = canonical_number(final.strip()) if sep else None
    if number is None:
        raise IntegrityError(f"{where}: answer does not end with '#### <number>'")
    # The <<48/2=24>> calculator annotations are tool traces, not part of the worked solution.
    return number, _CALC_RE.sub("", solution).strip()


@cache
def _read(file_name: str) -> tuple[tuple[str, str, str], ...]:
    text = resources.files("agent.tasks").joinpath("data", file_name).read_text(encoding="utf-8")
    items = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"agent/tasks/data/{file_name} line {line_no}"
        try:
            row = json.loads(line)
            question = row["question"].strip()
            number, solution = _split_answer(row["answer"], where)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{where}: not a GSM8K record ({exc}); reinstall evolve") from exc
        items.append((question, number, solution))
    return tuple(items)


@cache
def dev_indices() -> frozenset[int]:
    train = _read("train.jsonl")
    keys = sorted(range(len(train)), key=lambda i: stable_unit(_DEV_SALT, f"{i}\x00{train[i][0]}"))
    return frozenset(keys[:DEV_SIZE])


def _task(split: str, index: int, item: tuple[str, str, str]) -> Task:
    question, number, solution = item
    return Task(
        id=f"gsm8k/{split}/{index}",
        suite="gsm8k",
        split=split,
        origin="suite",
        kind="qa",
        question=question,
        answer=number,
        meta={"solution": solution, "index": index},
    )


class GSM8KSuite:
    name = "gsm8k"

    def load(self, split: str, limit: int | None = None, seed: int = 0) -> list[Task]:
        check_split(split)
        if split == "test":
            tasks = [_task("test", i, item) for i, item in enumerate(_read("test.jsonl"))]
        else:
            dev = dev_indices()
            tasks = [
                _task(split, i, item)
                for i, item in enumerate(_read("train.jsonl"))
                if (i in dev) == (split == "dev")
            ]
        return ordered(tasks, limit, seed)

    def verify(self, task: Task, answer: str, *, sandbox: SandboxLike | None = None) -> Verdict:
        return verify_qa(task, answer)

    def propose_variation(self, task: Task, rng: random.Random) -> Task | None:
        # Changing the numbers in a hand-written problem changes its answer in ways only a person
        # can check, so GSM8K offers no self-proposed variants.
        return None
