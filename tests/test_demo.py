"""`evolve demo`'s tool loop with a scripted model."""

from __future__ import annotations

from agent.surfaces.demo import solve_with_calculator
from tests.fakes import ScriptedModel


def test_demo_calls_the_calculator_then_replies_with_its_result():
    model = ScriptedModel(['{"tool": "calculator", "arguments": {"expression": "17*24+3"}}',
                           '{"tool": "reply", "content": "411"}'])
    events = list(solve_with_calculator(model, "17 pencils at 24 cents plus 3?"))
    assert events == [("call", "calculator({'expression': '17*24+3'}) -> 411"), ("answer", "411")]
    first, second = model.calls
    assert first[1]["tool_choice"] == "required" and second[1]["tool_choice"] == "auto"
    assert "reply now" in second[0][-1]["content"]


def test_demo_stops_at_the_step_budget():
    model = ScriptedModel(['{"tool": "calculator", "arguments": {"expression": "1+1"}}'] * 2)
    events = list(solve_with_calculator(model, "loop", max_steps=2))
    assert events[-1] == ("answer", "(no answer within the step budget)")
