"""Self-consistency's k samples share their first turn: one complete_many call, then repairs per
sample, and the vote as before. The fake model decides from the request (message count, seed)."""

from __future__ import annotations

import pytest

from agent.model.llm import complete_many, sample_sequentially
from agent.policy import PolicySpec
from agent.solver import Solver
from tests.fakes import ScriptedModel
from tests.test_strategies import SQUARE, fenced
from tools.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def test_program_samples_share_one_first_turn_call_and_vote_as_before(sandbox) -> None:
    printed = {1: "print(10)", 2: "print(12)", 3: "print(12.0)"}
    model = ScriptedModel(lambda messages, kw: fenced(printed[kw["seed"]]))
    spec = PolicySpec(mode="program", samples=3, temperature=0.7)
    result = Solver(model, [], sandbox=sandbox).solve("q", spec)
    assert len(model.many_calls) == 1
    messages, request = model.many_calls[0]
    assert request == {"n": 3, "max_tokens": 400, "temperature": 0.7, "seed": 1}
    assert len(messages) == 2  # the shared prompt: system and the program request
    vote = next(s for s in result.trajectory.steps if s.kind == "vote")
    assert vote.answers == ["10", "12", "12"] and vote.chosen == 1 and result.final_answer == "12"
    assert result.usage.calls == 3  # the fake answers complete_many with its sequential default


def test_a_failing_sample_is_repaired_on_its_own_with_its_own_seed(sandbox) -> None:
    def reply(messages, kw):
        if len(messages) == 2:  # the shared first turn
            return fenced("print(7)" if kw["seed"] != 2 else "raise SystemExit(3)")
        return fenced("print(7)")  # the repair turn of the sample whose program failed

    model = ScriptedModel(reply)
    spec = PolicySpec(mode="program", samples=3, temperature=0.7, repairs=1)
    result = Solver(model, [], sandbox=sandbox).solve("q", spec)
    assert len(model.many_calls) == 1
    repairs = [kw for messages, kw in model.calls if len(messages) == 4]
    assert [kw["seed"] for kw in repairs] == [2]  # sample 1 keeps its seed for its repair
    assert result.final_answer == "7" and len(model.calls) == 4


def test_reason_samples_share_one_call() -> None:
    answers = {1: "The answer is 4.", 2: "The answer is 5.", 3: "The answer is 5."}
    model = ScriptedModel(lambda messages, kw: answers[kw["seed"]])
    result = Solver(model, []).solve("q", PolicySpec(mode="reason", samples=3, temperature=0.5))
    assert len(model.many_calls) == 1 and model.many_calls[0][1]["max_tokens"] == 400
    assert result.final_answer == "5"


def test_code_samples_share_one_call_and_vote_by_behaviour(sandbox) -> None:
    bodies = {1: "return x + x", 2: "return x * x", 3: "return abs(x) * abs(x)"}
    model = ScriptedModel(lambda messages, kw: fenced(f"def square(x):\n    {bodies[kw['seed']]}"))
    spec = PolicySpec(mode="act", samples=3, temperature=0.8)  # a code task is code whatever the mode
    result = Solver(model, [], sandbox=sandbox).solve(SQUARE.question, spec, kind="code",
                                                      entry_point="square")
    assert len(model.many_calls) == 1 and model.many_calls[0][1]["max_tokens"] == 700
    assert "x * x" in result.final_answer


def test_greedy_samples_run_once_without_a_vote(sandbox) -> None:
    model = ScriptedModel(lambda messages, kw: fenced("print(3)"))
    spec = PolicySpec(mode="program", samples=5, temperature=0.0)
    result = Solver(model, [], sandbox=sandbox).solve("q", spec)
    assert result.final_answer == "3"
    assert len(model.calls) == 1 and model.many_calls == []
    assert not any(s.kind == "vote" for s in result.trajectory.steps)


def test_act_samples_run_their_own_graph_per_sample() -> None:
    answers = iter(["The answer is 4.", "The answer is 5.", "The answer is 5."])
    model = ScriptedModel(lambda messages, kw: next(answers))
    result = Solver(model, []).solve("q", PolicySpec(samples=3, temperature=0.5))
    assert result.final_answer == "5" and model.many_calls == []


class _CompleteOnly:
    """A wrapper that has only complete() (as bench/strategies.py's replay cache)."""

    def __init__(self, model) -> None:
        self.model = model

    def complete(self, messages, **kwargs):
        return self.model.complete(messages, **kwargs)


def test_a_model_without_complete_many_gets_sequential_samples() -> None:
    inner = ScriptedModel(lambda messages, kw: f"seed {kw['seed']}")
    outs = complete_many(_CompleteOnly(inner), [{"role": "user", "content": "q"}], 3,
                         max_tokens=5, temperature=0.9, seed=10)
    assert [o.text for o in outs] == ["seed 10", "seed 11", "seed 12"]


def test_sequential_greedy_samples_are_one_call_shared() -> None:
    model = ScriptedModel(lambda messages, kw: "same")
    outs = sample_sequentially(model, [{"role": "user", "content": "q"}], 4, temperature=0.0)
    assert [o.text for o in outs] == ["same"] * 4
    assert len(model.calls) == 1 and sum(o.usage.calls for o in outs) == 1
    assert sum(o.usage.total_tokens for o in outs) == outs[0].usage.total_tokens
