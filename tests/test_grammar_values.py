"""Structured output with real weights checked by value, not by shape.

tests/test_llm_embedded.py checks a schema reply's keys and types and a forced tool call's name:
the grammar forces both, so they pass even when the model never saw the request. These check
what only the request can decide (SmolLM2-135M, greedy decoding, so the values are fixed).
"""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.model.llm import make_model
from tools.calculator import evaluate

pytestmark = pytest.mark.integration

CALCULATOR = [{"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 60}},
                   "required": ["expression"]}}}]


@pytest.fixture(scope="module")
def small_model():
    return make_model(Settings(model={"model": "smollm2-135m", "n_threads": 2}))


def test_schema_reply_carries_the_values_from_the_request(small_model):
    schema = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    result = small_model.complete([{"role": "user", "content": "Describe Bob, aged 30, as JSON."}],
                                  schema=schema)
    assert result.parsed == {"name": "Bob", "age": 30}


def test_forced_tool_call_computes_what_was_asked(small_model):
    result = small_model.complete([{"role": "user", "content": "Compute 17*24+3 with the calculator."}],
                                  tools=CALCULATOR, tool_choice="required")
    [call] = result.tool_calls
    assert evaluate(call.arguments["expression"]) == "411"
