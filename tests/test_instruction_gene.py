"""The instruction gene reaches the model in every mode: a reflective candidate of an act-mode
incumbent is a different prompt, not a relabelled copy of the incumbent."""

from __future__ import annotations

import pytest

from agent.policy import PolicySpec
from agent.solver import FINAL, Solver
from tests.fakes import ScriptedModel
from tools.calculator import calculator

RULE = "Write every intermediate quantity with its unit before combining them."


def _system_of_first_call(model: ScriptedModel) -> str:
    return next(m["content"] for m in model.calls[0][0] if m["role"] == "system")


def _answer_42(messages, kwargs):
    schema = kwargs.get("schema") or {}
    if "action" in schema.get("properties", {}):
        return {"thought": "done", "action": FINAL, "input": "42"}
    return "Six times seven is 42. The answer is 42"


@pytest.mark.parametrize("mode", ["act", "reason"])
@pytest.mark.parametrize("think_first", [True, False])
def test_the_instruction_is_in_the_system_message(mode, think_first):
    model = ScriptedModel(_answer_42)
    spec = PolicySpec(mode=mode, tools=() if mode == "reason" else ("calculator",),
                      think_first=think_first, instructions=RULE)
    result = Solver(model, [calculator]).solve("6*7?", spec)
    assert result.final_answer == "42"
    assert RULE in _system_of_first_call(model)


def test_without_the_gene_the_act_prompt_is_unchanged():
    with_rule, without = ScriptedModel(_answer_42), ScriptedModel(_answer_42)
    Solver(with_rule, [calculator]).solve("6*7?", PolicySpec(instructions=RULE))
    Solver(without, [calculator]).solve("6*7?", PolicySpec())
    a, b = _system_of_first_call(with_rule), _system_of_first_call(without)
    assert "Additional instructions" not in b and a != b
    assert a.replace("Additional instructions:\n" + RULE + "\n\n", "") == b
