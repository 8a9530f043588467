"""The worker's and the scheduler's improvement trigger: a NEW run with the user's suite, cycles
and budgets each time; only an interrupted run is resumed (it used to always resume, so a fresh
home logged "nothing to resume" and a finished run was re-reported as new work)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from agent.config import Settings
from agent.loop.graph import interrupted_run
from agent.surfaces.improve import improve_job
from agent.surfaces.worker import Worker, submit_question
from memory.embeddings import HashEmbedder
from memory.models import Cycle
from memory.store import Store
from tests.fakes import ScriptedModel
from tests.loop_fakes import answers_by_question, loop_model


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def make(tmp_path):
    settings = Settings(home=tmp_path / "home", loop={"suite": "gsm8k", "train_per_cycle": 9, "dev_size": 30,
                                                        "exemplars_k": 2, "patience": 0})
    settings.ensure_dirs()
    return settings, Store(settings, embedder=HashEmbedder(64))


def cycles_of(store, run_id):
    with store.session() as s:
        return [c.number for c in s.exec(select(Cycle).where(Cycle.run_id == run_id))]


def test_fresh_home_starts_a_new_run_with_the_given_suite_cycles_and_budgets(tmp_path, answers):
    settings, store = make(tmp_path)
    job = improve_job(settings, suite="arith", cycles=1, train=4, dev=6, model=loop_model(answers), store=store)
    first = job()
    assert not first["resumed"] and first["cycles"] == 1
    assert first["history"][0]["acquire"]["total"] == 4  # --train, not the settings' 9
    second = job()
    # A second trigger is new work: a new run id with its own cycle, not the old run re-reported.
    assert not second["resumed"] and second["run_id"] != first["run_id"] and second["cycles"] == 1
    assert len(cycles_of(store, second["run_id"])) == 1


class Interrupt(BaseException):
    """Stands in for the process dying mid-run (not an Exception, so nothing swallows it)."""


def test_only_an_interrupted_run_is_resumed(tmp_path, answers):
    settings, store = make(tmp_path)
    good = loop_model(answers)
    calls = {"n": 0}

    def dying(messages, kwargs):
        calls["n"] += 1
        if calls["n"] > 6:
            raise Interrupt()
        return good._fn(messages, kwargs)

    with pytest.raises(Interrupt):
        improve_job(settings, suite="arith", cycles=1, train=4, dev=6, model=ScriptedModel(dying), store=store)()
    pending = interrupted_run(settings)
    assert pending is not None
    resumed = improve_job(settings, suite="arith", cycles=1, train=4, dev=6, model=loop_model(answers),
                          store=store)()
    assert resumed["resumed"] and resumed["run_id"] == pending and resumed["cycles"] == 1
    assert interrupted_run(settings) is None
    fresh = improve_job(settings, suite="arith", cycles=1, train=4, dev=6, model=loop_model(answers), store=store)()
    assert not fresh["resumed"] and fresh["run_id"] != pending


def test_worker_trigger_runs_real_cycles(tmp_path, answers):
    settings, store = make(tmp_path)
    model = loop_model(answers)
    job = improve_job(settings, suite="arith", cycles=1, train=4, dev=6, model=model, store=store)
    for q in ("What is 2+2?", "What is 3+3?"):
        submit_question(store, q)
    w = Worker(settings, store, model, tools=[], improve=job, improve_every=2, exit_when_empty=True,
               wait=lambda s: None)
    assert w.run() == 0
    assert w.counts["improvements"] == 1
    with store.session() as s:
        assert len(list(s.exec(select(Cycle)))) == 1
