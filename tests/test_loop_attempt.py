"""The one attempt path (agent/attempt.py) and the one place solvers are built from a policy."""

from __future__ import annotations

import pytest

from agent.attempt import Solvers, run_attempt
from agent.config import Settings
from agent.model.llm import Usage
from agent.policy import PolicySpec, create_candidate, ensure_initial
from agent.tasks.base import Verdict
from memory.embeddings import HashEmbedder
from memory.models import Task
from memory.store import Store
from memory.trajectory import Reply
from tests.fakes import ScriptedModel
from tools.calculator import calculator


class Exact:
    def verify(self, task, answer, *, sandbox=None):
        ok = answer.strip() == task.answer
        return Verdict(correct=ok, reward=float(ok), detail="exact" if ok else "differs")


def answering(value: str) -> ScriptedModel:
    return ScriptedModel(lambda m, kw: {"action": "final_answer", "input": value} if kw.get("schema")
                         else "Working.")


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder(16))
    yield st
    st.close()


def task(kind: str = "qa", answer: str = "5") -> Task:
    return Task(id=f"arith/train/{kind}", suite="arith", split="train", question="2+3?", answer=answer, kind=kind)


def test_verified_pending_and_idempotent(settings, store):
    policy = ensure_initial(store)
    t = task()
    store.upsert_tasks([t])
    solver = Solvers(settings, answering("5"), [calculator]).for_policy(policy)
    spent = Usage()
    ep = run_attempt(store=store, solver=solver, task=t, policy=policy, run_key="k1", source="acquire",
                     suite=Exact(), spent=spent)
    assert (ep.verdict, ep.reward, ep.feedback) == ("pass", 1.0, "exact")
    assert spent.calls == 2 and ep.prompt_tokens == spent.prompt_tokens and spent.latency_s > 0
    again = run_attempt(store=store, solver=solver, task=t, policy=policy, run_key="k1", source="acquire",
                        suite=Exact(), spent=spent)
    assert again.id == ep.id and spent.calls == 2  # a resumed attempt solves nothing again
    pending = run_attempt(store=store, solver=solver, task=t, policy=policy, run_key="k2", source="worker",
                          finish=lambda result: [Reply(text=f"It is {result.final_answer}.")])
    assert pending.verdict == "pending" and pending.trajectory[-1] == {"kind": "reply", "text": "It is 5."}


def test_the_task_kind_not_the_suite_decides_the_solve_options(settings, store):
    policy = ensure_initial(store)
    model = answering("def f(): return 5")
    solver = Solvers(settings, model, [calculator]).for_policy(policy)
    code = task("code", answer="")
    store.upsert_tasks([code])
    run_attempt(store=store, solver=solver, task=code, policy=policy, run_key="c", source="worker")
    assert model.calls[-1][1]["schema"]["properties"]["input"]["maxLength"] == 1500
    qa = task("qa")
    store.upsert_tasks([qa])
    run_attempt(store=store, solver=solver, task=qa, policy=policy, run_key="q", source="worker")
    assert model.calls[-1][1]["schema"]["properties"]["input"]["maxLength"] == 400


def test_a_crash_is_an_error_episode(settings, store):
    policy = ensure_initial(store)
    t = task()
    store.upsert_tasks([t])
    solver = Solvers(settings, ScriptedModel([ValueError("boom")]), [calculator]).for_policy(policy)
    ep = run_attempt(store=store, solver=solver, task=t, policy=policy, run_key="e", source="eval", suite=Exact())
    assert ep.verdict == "error" and "boom" in ep.error


def test_one_solver_per_budget_and_tools_and_the_policy_s_own_model(tmp_path, store):
    settings = Settings(home=tmp_path / "h", model={"backend": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                     "model": "base"})
    base = ScriptedModel([], name="base")
    solvers = Solvers(settings, base, [calculator])
    v1 = ensure_initial(store)
    v2 = create_candidate(store, v1, PolicySpec(temperature=0.5, insights=["check the units twice, always"]))
    assert solvers.for_policy(v1) is solvers.for_policy(v2)  # per-solve settings differ, the solver is shared
    assert solvers.for_policy(v1).model is base
    tuned = solvers.for_policy(PolicySpec(model_id="ft:base:evolve-1"))
    assert tuned.model is not base and tuned.model.name == "ft:base:evolve-1"
    assert solvers.for_policy(PolicySpec(max_steps=2)).max_steps == 2
