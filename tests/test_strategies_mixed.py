"""The mixed strategy: greedy reasoning and a greedy program, more samples of both only when they
disagree, one vote over all. The fake model's reply holds a sentence and a program, so it need
not tell the two requests apart: the reasoning reads the sentence, the sandbox runs the program.
It decides from the request's seed (None: greedy)."""

from __future__ import annotations

import pytest

from agent import prompts
from agent.loop import proposers as P
from agent.model.rows import inference_messages
from agent.policy import PolicySpec
from agent.solver import Solver
from tests.fakes import ScriptedModel
from tests.test_strategies import fenced
from tools.sandbox import Sandbox

MIXED = PolicySpec(mode="mixed", tools=(), samples=6, temperature=0.7)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def reply(said: int, printed: int | None) -> str:
    program = fenced(f"print({printed})") if printed is not None else fenced("x = 1")
    return f"The answer is {said}.\n\n{program}"


def scripted(by_seed: dict) -> ScriptedModel:
    return ScriptedModel(lambda messages, kw: by_seed[kw["seed"]])


def votes(result) -> list[str]:
    return next(s for s in result.trajectory.steps if s.kind == "vote").answers


def test_agreeing_reasoning_and_program_answer_without_more_samples(sandbox) -> None:
    model = scripted({None: reply(12, 12)})
    result = Solver(model, [], sandbox=sandbox).solve("q", MIXED)
    assert result.final_answer == "12" and votes(result) == ["12", "12"]
    assert [(kw["temperature"], kw["seed"]) for _, kw in model.calls] == [(0.0, None), (0.0, None)]
    assert model.many_calls == [] and result.usage.calls == 2
    # The two requests: the question as asked (reasoning) and the program request.
    assert [m[-1]["content"] for m, _ in model.calls] == ["q", prompts.program_request("q")]


def test_disagreement_draws_both_kinds_in_two_batches_and_votes_over_all(sandbox) -> None:
    # Greedy: reasoning 10, program 12. Samples 2-3 reason, 4-5 write programs (seeds 3-6).
    model = scripted({None: reply(10, 12), 3: reply(12, 0), 4: reply(10, 0),
                      5: reply(0, 12), 6: reply(0, 7)})
    result = Solver(model, [], sandbox=sandbox).solve("q", MIXED)
    assert votes(result) == ["10", "12", "12", "10", "12", "7"]
    assert result.final_answer == "12"
    batches = [(m[-1]["content"], kw["n"], kw["seed"], kw["temperature"]) for m, kw in model.many_calls]
    assert batches == [("q", 2, 3, 0.7), (prompts.program_request("q"), 2, 5, 0.7)]
    assert result.usage.calls == 6
    # The winner is the greedy program: its steps under the program's system message.
    prompt = result.trajectory.prompt
    assert prompt.system.startswith(prompts.PROGRAM_SYSTEM)
    kept = [s.input.strip() for s in result.trajectory.steps if s.kind == "action" and s.action == "python"]
    assert kept == ["print(12)"]


def test_a_program_without_an_answer_is_a_disagreement(sandbox) -> None:
    # The greedy program prints nothing, twice (its repair too): the reasoning alone is doubtful.
    model = scripted({None: reply(9, None), 3: reply(9, 0), 4: reply(8, 0), 5: reply(0, 9), 6: reply(0, 9)})
    result = Solver(model, [], sandbox=sandbox).solve("q", MIXED)
    assert votes(result) == ["9", "", "9", "8", "9", "9"] and result.final_answer == "9"
    # The winner is the greedy reasoning (first 9): the reasoning system message, one thought.
    assert result.trajectory.prompt.system == prompts.strategy_system(MIXED.system_prompt, MIXED)
    assert [s.kind for s in result.trajectory.steps] == ["prompt", "thought", "vote", "action"]


def test_a_tie_goes_to_the_greedy_reasoning(sandbox) -> None:
    model = scripted({None: reply(10, 12), 3: reply(12, 0), 4: reply(10, 0), 5: reply(0, 7), 6: reply(0, 8)})
    result = Solver(model, [], sandbox=sandbox).solve("q", MIXED)
    assert votes(result) == ["10", "12", "12", "10", "7", "8"] and result.final_answer == "10"


def test_greedy_mixed_is_the_pair_alone(sandbox) -> None:
    model = scripted({None: reply(10, 12)})
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="mixed", samples=6))
    assert votes(result) == ["10", "12"] and result.final_answer == "10" and len(model.calls) == 2


def test_an_odd_budget_gives_the_extra_sample_to_reasoning(sandbox) -> None:
    model = scripted({None: reply(10, 12), 3: reply(1, 0), 4: reply(1, 0), 5: reply(0, 2)})
    result = Solver(model, [], sandbox=sandbox).solve("q", MIXED.model_copy(update={"samples": 5}))
    assert votes(result) == ["10", "12", "1", "1", "2"] and result.final_answer == "1"
    # One program sample: a plain call, not a batch of one.
    assert [kw["n"] for _, kw in model.many_calls] == [2]


def test_mixed_builds_its_own_sandbox_when_the_solver_has_none() -> None:
    model = scripted({None: reply(4, 4)})
    assert Solver(model, []).solve("q", MIXED).final_answer == "4"


def test_the_mixed_vote_proposer() -> None:
    exp = P.Experience()
    new = P.mixed_vote(PolicySpec(), exp)
    assert (new.mode, new.samples, new.temperature) == ("mixed", 6, 0.7)
    assert P.mixed_vote(new, exp) is None
    assert P.mixed_vote(PolicySpec(), P.Experience(task_kind="code")) is None


def test_a_mixed_episode_becomes_the_row_of_its_winning_kind(sandbox) -> None:
    reasoned = Solver(scripted({None: reply(9, None), 3: reply(9, 0), 4: reply(9, 0), 5: reply(0, 1),
                                6: reply(0, 2)}), [], sandbox=sandbox).solve("q", MIXED)
    rows = inference_messages(reasoned.trajectory, MIXED, [])
    assert [m["role"] for m in rows] == ["system", "user", "assistant"]
    assert rows[1]["content"] == "q" and rows[2]["content"].startswith("The answer is 9.")
    programmed = Solver(scripted({None: reply(10, 12), 3: reply(12, 0), 4: reply(10, 0), 5: reply(0, 12),
                                  6: reply(0, 7)}), [], sandbox=sandbox).solve("q", MIXED)
    program_rows = inference_messages(programmed.trajectory, MIXED, [])
    assert program_rows[0]["content"].startswith(prompts.PROGRAM_SYSTEM)
    assert program_rows[1:] == [{"role": "user", "content": prompts.program_request("q")},
                                {"role": "assistant", "content": "```python\nprint(12)\n```"}]
