"""GSM8K and the procedural arithmetic suite: splits, determinism, verification, variants."""

from __future__ import annotations

import hashlib
import json
import random
import re
from importlib import resources

import pytest

from agent.errors import ConfigError
from agent.tasks import SUITE_NAMES, get_suite, self_propose_variation
from agent.tasks.arith import TEMPLATES, ArithSuite, candidate, split_of
from agent.tasks.gsm8k import DEV_SIZE, GSM8KSuite, dev_indices


# --- GSM8K -----------------------------------------------------------------------------------


def test_gsm8k_ships_data_with_licence():
    data = resources.files("agent.tasks").joinpath("data")
    assert "MIT License" in data.joinpath("LICENSE").read_text()
    assert data.joinpath("train.jsonl").is_file() and data.joinpath("test.jsonl").is_file()


def test_gsm8k_splits_partition_the_original_files():
    suite = GSM8KSuite()
    train, dev, test = (suite.load(s) for s in ("train", "dev", "test"))
    assert len(dev) == DEV_SIZE
    assert len(train) + len(dev) == 7473 and len(test) == 1319
    train_idx = {t.meta["index"] for t in train}
    dev_idx = {t.meta["index"] for t in dev}
    assert not train_idx & dev_idx and train_idx | dev_idx == set(range(7473))
    assert {t.question for t in train}.isdisjoint(t.question for t in dev)
    assert all(t.id == f"gsm8k/{t.split}/{t.meta['index']}" for t in train + dev + test)


def test_gsm8k_dev_split_follows_the_documented_method():
    # Recomputed from the module docstring, not from the code: changing the method would
    # silently move old dev items into train.
    raw = resources.files("agent.tasks").joinpath("data", "train.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"].strip() for line in raw if line.strip()]

    def key(i: int) -> int:
        text = f"gsm8k-dev-v1\x00{i}\x00{questions[i]}".encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")

    expected = set(sorted(range(len(questions)), key=key)[:DEV_SIZE])
    assert dev_indices() == expected
    assert sorted(expected)[:5] == [36, 46, 59, 63, 67]


def test_gsm8k_reference_and_solution_parsing():
    task = GSM8KSuite().load("train", limit=1)[0]
    assert task.id == "gsm8k/train/0"
    assert task.answer == "72"
    assert "<<" not in task.meta["solution"] and "####" not in task.meta["solution"]
    assert "48/2 = 24" in task.meta["solution"]
    # Thousands separators in references are normalised.
    raw = resources.files("agent.tasks").joinpath("data", "train.jsonl").read_text().splitlines()
    with_comma = next(i for i, line in enumerate(raw) if re.search(r"#### \d+,\d", line))
    split = "dev" if with_comma in dev_indices() else "train"
    item = next(t for t in GSM8KSuite().load(split) if t.meta["index"] == with_comma)
    assert "," not in item.answer and item.answer == json.loads(raw[with_comma])["answer"].split("####")[1].strip().replace(",", "")


def test_gsm8k_load_is_deterministic_per_seed():
    suite = GSM8KSuite()
    a, b = suite.load("dev", limit=20, seed=7), suite.load("dev", limit=20, seed=7)
    assert [t.id for t in a] == [t.id for t in b]
    assert [t.id for t in suite.load("dev", limit=20, seed=8)] != [t.id for t in a]
    assert len(suite.load("test", limit=0)) == 0


def test_gsm8k_verify_and_no_variants():
    suite = GSM8KSuite()
    task = suite.load("train", limit=1)[0]
    ok = suite.verify(task, "48 + 24 = 72 clips.\n#### 72")
    assert ok.correct and ok.reward == 1.0
    bad = suite.verify(task, "The answer is 70.")
    assert not bad.correct and bad.reward == 0.0 and "70" in bad.detail and "72" in bad.detail
    assert not suite.verify(task, "I don't know").correct
    assert self_propose_variation(task, random.Random(0)) is None


# --- arith -----------------------------------------------------------------------------------


def test_arith_templates_give_exact_consistent_answers():
    for k in range(400):
        template, problem = candidate(k)
        assert isinstance(problem.answer, int) and problem.answer >= 0, (template, problem)
        # The worked solution ends with the answer, so it can serve as a reference.
        assert problem.solution.rstrip(".").endswith(str(problem.answer)), problem
    seen = {candidate(k)[0] for k in range(400)}
    assert seen == set(TEMPLATES)


def test_arith_splits_are_disjoint_and_content_defined():
    suite = ArithSuite()
    loaded = {s: suite.load(s, limit=150) for s in ("train", "dev", "test")}
    questions = {s: {t.question for t in ts} for s, ts in loaded.items()}
    assert questions["train"].isdisjoint(questions["dev"])
    assert questions["train"].isdisjoint(questions["test"])
    assert questions["dev"].isdisjoint(questions["test"])
    for split, tasks in loaded.items():
        assert len(tasks) == 150
        assert all(split_of(t.question) == split and t.split == split for t in tasks)
        assert all(t.id.startswith(f"arith/{split}/") for t in tasks)
    # A later training stream never produces a dev question.
    later_train = {t.question for t in suite.load("train", limit=300, seed=5)}
    assert later_train.isdisjoint(questions["dev"] | questions["test"])


def test_arith_is_deterministic_and_seeds_give_fresh_tasks():
    suite = ArithSuite()
    a = suite.load("train", limit=30, seed=3)
    b = suite.load("train", limit=30, seed=3)
    assert [(t.id, t.question, t.answer) for t in a] == [(t.id, t.question, t.answer) for t in b]
    c = suite.load("train", limit=30, seed=4)
    assert {t.id for t in a}.isdisjoint(t.id for t in c)
    assert len(suite.load("dev")) == 100  # documented default limit


def test_arith_rejects_bad_arguments():
    suite = ArithSuite()
    with pytest.raises(ConfigError, match="split"):
        suite.load("validation")
    with pytest.raises(ConfigError, match="limit"):
        suite.load("train", limit=10**6)
    with pytest.raises(ConfigError, match="seed"):
        suite.load("train", seed=-1)


def test_arith_verify_uses_reference():
    suite = ArithSuite()
    task = suite.load("dev", limit=1)[0]
    assert suite.verify(task, f"Working... the answer is {task.answer}.").correct
    assert not suite.verify(task, f"The answer is {int(task.answer) + 1}.").correct


def test_arith_variation_is_verifiable_train_task():
    suite = ArithSuite()
    parent = suite.load("train", limit=1)[0]
    rng = random.Random(11)
    variants = [self_propose_variation(parent, rng) for _ in range(10)]
    assert all(v is not None for v in variants)
    for v in variants:
        assert v.origin == "self-proposed" and v.parent_task_id == parent.id
        assert v.split == "train" and split_of(v.question) == "train"
        assert v.meta["template"] == parent.meta["template"]
        assert v.question != parent.question
        assert suite.verify(v, f"#### {v.answer}").correct
        assert v.id.startswith("arith/train/v")
    # Same rng state, same variant: ids are reproducible.
    again = self_propose_variation(parent, random.Random(11))
    assert again.id == variants[0].id and again.question == variants[0].question


def test_no_variants_from_held_out_tasks():
    dev_task = ArithSuite().load("dev", limit=1)[0]
    assert self_propose_variation(dev_task, random.Random(0)) is None


# --- registry --------------------------------------------------------------------------------


def test_get_suite_names_and_errors(tmp_path):
    for name in ("gsm8k", "arith", "code"):
        assert get_suite(name).name == name
    assert set(SUITE_NAMES) == {"gsm8k", "arith", "code", "file"}
    with pytest.raises(ConfigError, match="unknown suite 'mmlu'"):
        get_suite("mmlu")
    with pytest.raises(ConfigError, match="--tasks"):
        get_suite("file")
    with pytest.raises(ConfigError, match='suite "file" only'):
        get_suite("gsm8k", tasks_file=tmp_path / "x.jsonl")
