"""The loop settings `attempts`, `self_propose` and `wall_time_s` each change what the loop does."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.loop.acquire import pick_train_tasks
from agent.model.adapters import RATIONALISED_SOURCE
from agent.loop.graph import run_improve
from agent.loop.runtime import Runtime
from agent.tasks import get_suite
from memory.embeddings import HashEmbedder
from memory.models import Episode
from memory.store import Store
from tests.fakes import TickClock
from tests.loop_fakes import answers_by_question, loop_model


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def make(tmp_path, **loop):
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 3, "dev_size": 4,
                                                        "patience": 0, "exemplars_k": 1, **loop})
    settings.ensure_dirs()
    return settings, Store(settings, embedder=HashEmbedder(64))


@pytest.mark.parametrize("attempts", [1, 2])
def test_attempts_is_the_number_of_episodes_per_train_task(tmp_path, answers, attempts):
    settings, store = make(tmp_path, attempts=attempts)
    summary = run_improve(settings, cycles=1, model=loop_model(answers), store=store, run_id="r-att")
    acquired = summary["history"][0]["acquire"]
    assert acquired["total"] == 3 * attempts
    episodes = store.episodes(source="acquire")
    per_task = {}
    for ep in episodes:
        per_task[ep.task_id] = per_task.get(ep.task_id, 0) + 1
    assert sorted(per_task.values()) == [attempts] * 3
    assert {ep.run_key.rsplit("/", 1)[1] for ep in episodes} == {str(k) for k in range(attempts)}


def _runtime(settings, store):
    return Runtime(settings=settings, model=loop_model({}), store=store, suite=get_suite("arith"), tools=[])


def _pass(store, task, key, source="acquire"):
    store.add_episode(Episode(run_key=key, task_id=task.id, split="train", policy_id="v1", source=source,
                              model_fingerprint="fake", final_answer=task.answer, verdict="pass"))


@pytest.mark.parametrize("self_propose", [False, True])
def test_self_propose_adds_train_variants_of_solved_tasks(tmp_path, self_propose):
    settings, store = make(tmp_path, train_per_cycle=8, self_propose=self_propose)
    rt = _runtime(settings, store)
    first = pick_train_tasks(rt, "r-sp", 1, 8)
    assert all(t.origin == "suite" for t in first)  # nothing solved yet: nothing to vary
    for t in first[:3]:
        _pass(store, t, f"seed/{t.id}")
    again = pick_train_tasks(rt, "r-sp", 1, 8)  # the same (run, cycle) picks the same tasks
    assert [t.id for t in again[:8]] == [t.id for t in first]
    variants = again[8:]
    if not self_propose:
        assert variants == []
        return
    # n // 4 = 2 of the 3 solved tasks get a variant: train split, marked, linked to its parent.
    assert len(variants) == 2
    parents = {t.id for t in first[:3]}
    for v in variants:
        assert v.origin == "self-proposed" and v.split == "train" and v.parent_task_id in parents
        assert v.id not in parents and v.question not in {t.question for t in first}
        assert v.answer and store.get_task(v.id) is not None  # stored, so it can be verified
    assert [v.parent_task_id for v in variants] == [t.id for t in again[:8] if t.id in parents][:2]


@pytest.mark.parametrize("wall_time_s, cycles_run", [(0.0, 3), (1.0, 1)])
def test_wall_time_budget_stops_the_loop(tmp_path, answers, wall_time_s, cycles_run):
    # Each clock read moves 10 s, so a phase "takes" 10 s and one cycle spends the 1 s budget.
    settings, store = make(tmp_path, wall_time_s=wall_time_s)
    summary = run_improve(settings, cycles=3, model=loop_model(answers), store=store,
                          clock=TickClock(step=10.0), run_id="r-wall")
    assert summary["cycles"] == cycles_run
    assert summary["elapsed_s"] >= 10.0 * cycles_run
    if wall_time_s:
        assert summary["stop_reason"].startswith("wall-time budget spent")
    else:
        assert summary["stop_reason"] == "completed 3 cycle(s)"


def test_a_rationalised_pass_is_no_parent_for_a_variation(tmp_path):
    """STaR episodes pass with the reference in the request: the model did not solve the task."""
    settings, store = make(tmp_path, train_per_cycle=8, self_propose=True)
    rt = _runtime(settings, store)
    first = pick_train_tasks(rt, "r-sp", 1, 8)
    for t in first[:3]:
        _pass(store, t, f"star/{t.id}", source=RATIONALISED_SOURCE)
    assert pick_train_tasks(rt, "r-sp", 1, 8)[8:] == []
    _pass(store, first[0], f"seed/{first[0].id}")
    assert [v.parent_task_id for v in pick_train_tasks(rt, "r-sp", 1, 8)[8:]] == [first[0].id]
