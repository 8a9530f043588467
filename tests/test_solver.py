"""The solver directly, with scripted models that decide from the request (the schema and the
actions it still allows), not from prompt wording."""

from __future__ import annotations

import pytest

from agent.policy import PolicySpec
from agent.solver import FINAL, Solver
from memory.trajectory import Action, Observation, ParseError, Settled, Thought
from tests.fakes import ScriptedModel, TickClock
from tools.base import ToolResult, tool
from tools.calculator import calculator

THINK = PolicySpec()
JSON_ONLY = PolicySpec(think_first=False)


def allowed(kwargs) -> list[str]:
    return (kwargs.get("schema") or {}).get("properties", {}).get("action", {}).get("enum", [])


def acts(model) -> list[dict]:
    return [kw for _, kw in model.calls if kw.get("schema")]


def test_a_malformed_act_reply_goes_back_to_the_model_and_the_next_parses():
    seen = {"acts": 0}

    def step(messages, kwargs):
        if not allowed(kwargs):
            return "Six times seven."
        seen["acts"] += 1
        return '{"action": "final_' if seen["acts"] == 1 else {"action": FINAL, "input": "42"}

    result = Solver(ScriptedModel(step), [calculator]).solve("6*7?", THINK)
    assert result.final_answer == "42" and result.steps == 2 and not result.error
    kinds = [s.kind for s in result.trajectory.steps]
    assert kinds == ["prompt", "thought", "parse_error", "thought", "action"]
    # the malformed reply is not in the training view, the reasoning is
    msgs = result.trajectory.to_messages()
    assert all("final_'" not in str(m.get("content")) for m in msgs)
    assert msgs[-1]["content"].startswith("Six times seven.")


def test_json_only_policy_recovers_from_a_parse_error_too():
    model = ScriptedModel(['not json at all', {"thought": "easy", "action": FINAL, "input": "5"}])
    result = Solver(model, [calculator]).solve("2+3?", JSON_ONLY)
    assert result.final_answer == "5"
    assert isinstance(result.trajectory.steps[1], ParseError) and result.trajectory.steps[1].raw == "not json at all"
    # the second request shows the model its own malformed reply
    assert model.calls[1][0][-2] == {"role": "assistant", "content": "not json at all"}


def test_at_the_step_budget_only_the_final_answer_remains():
    def step(messages, kwargs):
        if not allowed(kwargs):
            return "Keep checking."
        if "calculator" in allowed(kwargs):
            return {"action": "calculator", "input": "6*7"}
        return {"action": FINAL, "input": "42"}

    model = ScriptedModel(step)
    result = Solver(model, [calculator], max_steps=3).solve("6*7?", THINK)
    assert result.final_answer == "42" and result.forced and result.steps == 3
    assert [allowed(kw) for kw in acts(model)] == [["calculator", FINAL]] * 2 + [[FINAL]]
    calls = [s for s in result.trajectory.steps if isinstance(s, Action) and s.action == "calculator"]
    results = result.trajectory.of(Observation)
    assert [c.call_id for c in calls] == [o.call_id for o in results] and len(set(c.call_id for c in calls)) == 2
    assert all(o.content == "42" and o.ok for o in results)


def test_the_token_budget_forces_the_final_answer_early():
    def step(messages, kwargs):
        if not allowed(kwargs):
            return "x" * 400  # a long thought: ~100 completion tokens
        if "calculator" in allowed(kwargs):
            return {"action": "calculator", "input": "1+1"}
        return {"action": FINAL, "input": "2"}

    model = ScriptedModel(step)
    result = Solver(model, [calculator], max_steps=8, max_tokens_per_task=150).solve("1+1?", THINK)
    assert result.forced and result.final_answer == "2" and result.steps < 8
    assert allowed(acts(model)[-1]) == [FINAL]


def test_no_final_answer_within_the_budget_is_reported():
    model = ScriptedModel(lambda m, kw: "never json")
    result = Solver(model, [calculator], max_steps=2).solve("?", JSON_ONLY)
    assert result.final_answer == "" and "no final answer" in result.error
    assert len(result.trajectory.of(ParseError)) == 3  # two steps and the failed forced turn


def test_a_final_answer_written_as_arithmetic_is_settled_by_the_calculator():
    model = ScriptedModel(["Seven fives and fourteen.", {"action": FINAL, "input": "7 * 5 + 14"}])
    result = Solver(model, [calculator]).solve("?", THINK)
    assert result.final_answer == "49"
    assert result.trajectory.steps[-1] == Settled(expression="7 * 5 + 14", value="49")


class _NoExamples:
    """A sandbox stand-in for a code task without visible examples: the check finds nothing."""

    def run(self, code, **kw):
        from tools.sandbox import SandboxResult

        return SandboxResult(exit_code=0, stdout="", stderr="", duration_s=0.0)


def test_reasoning_that_states_the_answer_ends_a_numeric_task_but_not_a_code_task():
    def step(messages, kwargs):
        if not allowed(kwargs):
            return "So the answer is 5.\n```python\ndef f():\n    return 5\n```"
        return {"action": FINAL, "input": "5"}

    solver = Solver(ScriptedModel(step), [calculator], sandbox=_NoExamples())
    numeric = solver.solve("2+3?", THINK)
    assert numeric.final_answer == "5" and solver.model.calls[-1][1]["schema"] is None
    # A code task is solved by the code strategy (agent/strategies.py): the stated "answer"
    # does not end it, and the function is the answer.
    code = solver.solve("write f", THINK, kind="code", entry_point="f")
    assert code.final_answer.startswith("def f")
    assert solver.model.calls[-1][1]["schema"] is None


def test_per_solve_settings_do_not_stick_to_a_shared_solver():
    model = ScriptedModel(lambda m, kw: {"thought": "t", "action": FINAL, "input": "1"} if kw.get("schema")
                          else "thinking")
    solver = Solver(model, [calculator])
    solver.solve("a", PolicySpec(temperature=0.7, think_first=False))
    solver.solve("b", PolicySpec(temperature=0.0))
    temps = [kw["temperature"] for _, kw in model.calls]
    assert temps == [0.7, 0.0, 0.0]
    assert not hasattr(solver, "_temperature") and not hasattr(solver, "_think")


def test_usage_is_the_sum_of_this_solve_s_calls():
    model = ScriptedModel(lambda m, kw: {"action": FINAL, "input": "3"} if kw.get("schema") else "one and two",
                          clock=TickClock(0.25))
    model.usage.prompt_tokens = 10_000  # earlier work on the shared model must not count
    solver = Solver(model, [calculator])
    first = solver.solve("1+2?", THINK)
    second = solver.solve("1+2?", THINK)
    assert first.usage.calls == second.usage.calls == 2
    assert first.usage.latency_s == pytest.approx(0.5)
    assert first.usage.prompt_tokens < 1000 and first.usage == second.usage


def test_events_go_to_the_sink_of_that_solve():
    seen = []
    model = ScriptedModel(["Let me add.", {"action": "calculator", "input": "2+2"}, "The sum is 4.",
                           {"action": FINAL, "input": "4"}])
    result = Solver(model, [calculator]).solve("2+2?", THINK, on_event=lambda k, d: seen.append(k))
    assert seen == ["thought", "action", "observation", "thought", "action", "final"]
    assert isinstance(result.trajectory.steps[1], Thought)


@pytest.mark.parametrize("echo", ["The answer is N.", "the answer is N", "The answer is: N", "N", " N. "])
def test_the_prompts_placeholder_as_final_answer_goes_back_to_the_model(echo):
    seen = {"acts": 0}

    def step(messages, kwargs):
        if not allowed(kwargs):
            return "The page says five."
        seen["acts"] += 1
        return {"action": FINAL, "input": echo if seen["acts"] == 1 else "5"}

    result = Solver(ScriptedModel(step), [calculator]).solve("How many?", THINK)
    assert result.final_answer == "5"
    assert "placeholder" in result.trajectory.of(ParseError)[0].error


@pytest.mark.parametrize("answer", ["n", "Nine", "The answer is 9.", "n = 9", "No"])
def test_answers_that_only_look_like_the_placeholder_are_kept(answer):
    model = ScriptedModel(["Done.", {"action": FINAL, "input": answer}])
    assert Solver(model, [calculator]).solve("Which?", THINK).final_answer == answer


def test_a_bare_n_is_an_answer_where_no_number_is_due():
    # Code tasks (numeric_answers off) may legitimately answer with the name N.
    from agent.solver import _validate_action

    assert _validate_action({"action": FINAL, "input": "N"}, {}, numeric=False).input == "N"


@pytest.mark.parametrize("thought, final", [
    ('{"thought": "", "action": "final_answer", "input": "8"}', "8"),
    ('The page says so. {"action": "final_answer", "input": 8}', "8"),
    ('{"action": "final_answer", "input": "N"}', None),       # the placeholder: not a conclusion
    ('{"action": "open_url", "input": "http://x.test/"}', None),
    ('{"action": "final_answer", "input": "eight"', None),     # not JSON
])
def test_a_final_answer_written_as_json_in_the_reasoning_concludes(thought, final):
    def step(messages, kwargs):
        if not allowed(kwargs):
            return thought
        return {"action": FINAL, "input": "41"}  # the act turn, asked only when nothing concluded

    result = Solver(ScriptedModel(step), [calculator]).solve("How many?", THINK)
    assert result.final_answer == (final or "41")
    concluded = [s for s in result.trajectory.of(Action) if s.source == "thought"]
    assert bool(concluded) == (final is not None)


BELLS = "Twelve bells hang in the tower of St Aldric, the heaviest weighing two tonnes."


@pytest.mark.parametrize("copied, goes_back", [
    ("Twelve bells hang in the tower of St Aldric the heaviest weighing two tonnes.", True),  # item 35
    ("twelve bells hang in the tower of st aldric", True),   # case and punctuation aside
    ("Twelve bells", False),                                  # short: may be the answer itself
    ("There are twelve bells in the tower of St Aldric.", False),  # not a span of the page
])
def test_a_final_answer_that_copies_the_page_goes_back_to_the_model(copied, goes_back):
    def open_url(url: str) -> ToolResult:
        """Open a web page.

        Args:
            url: The full address.
        """
        return ToolResult(ok=True, untrusted=True, content=f"URL: {url}\n\n{BELLS}")

    def step(messages, kwargs):
        if not allowed(kwargs):
            return "I will read the page."
        if "open_url" in allowed(kwargs) and not any("tonnes" in str(m["content"]) for m in messages):
            return {"action": "open_url", "input": "http://facts.test/page"}
        retried = any("copies a sentence" in str(m["content"]) for m in messages)
        return {"action": FINAL, "input": "12" if retried else copied}

    result = Solver(ScriptedModel(step), [tool(open_url, name="open_url")], max_steps=5).solve(
        "How many bells hang in the tower of St Aldric? See http://facts.test/page", PolicySpec(tools=("open_url",)))
    assert result.final_answer == ("12" if goes_back else copied)
    assert bool(result.trajectory.of(ParseError)) is goes_back


def test_a_long_answer_from_trusted_output_or_for_code_is_kept():
    from agent.solver import _copies_data

    calc = Observation(tool="calculator", ok=True, content=BELLS, untrusted=False)
    assert not _copies_data(BELLS, {}, [calc])
    assert _copies_data(BELLS, {"memories": [BELLS]}, [])  # a memory is data like a page
