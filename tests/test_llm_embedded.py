"""The embedded backend with real weights: SmolLM2-135M for speed, one test on the default model."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.model.llm import EmbeddedModel, make_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_model():
    return make_model(Settings(model={"model": "smollm2-135m", "n_threads": 2}))


def test_plain_chat(small_model):
    result = small_model.complete([{"role": "user", "content": "What is the capital of France? One word."}],
                                  max_tokens=24)
    assert "Paris" in result.text
    assert result.usage.prompt_tokens > 5 and result.usage.completion_tokens > 0
    assert result.usage.latency_s > 0
    assert result.fingerprint == ("gguf-sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


def test_streaming_matches_plain_chat(small_model):
    messages = [{"role": "user", "content": "Name a colour of the sky."}]
    pieces = list(small_model.stream(messages, max_tokens=16))
    assert len(pieces) > 1
    plain = small_model.complete(messages, max_tokens=16).text
    assert "".join(pieces).strip() == plain.strip()  # greedy decoding: same tokens either way


def test_schema_constrained_output(small_model):
    schema = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    result = small_model.complete([{"role": "user", "content": "Describe Bob, aged 30, as JSON."}],
                                  schema=schema)
    assert isinstance(result.parsed, dict)
    assert set(result.parsed) >= {"name", "age"} and isinstance(result.parsed["age"], int)


def test_tool_call_through_the_grammar(small_model):
    tools = [{"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 60}},
                       "required": ["expression"]}}}]
    result = small_model.complete([{"role": "user", "content": "Compute 17*24+3 with the calculator."}],
                                  tools=tools, tool_choice="required")
    assert result.tool_calls and result.tool_calls[0].name == "calculator"
    assert isinstance(result.tool_calls[0].arguments.get("expression"), str)


@pytest.mark.default_model
def test_default_model_calls_the_calculator_for_a_word_problem():
    model = make_model(Settings())
    assert isinstance(model, EmbeddedModel)
    assert model.fingerprint.endswith("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
    tools = [{"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 80}},
                       "required": ["expression"]}}}]
    result = model.complete(
        [{"role": "user", "content": "Pencils cost 17 cents. Tom buys 24 pencils and a 3 cent eraser. "
                                     "How many cents does he pay? Use the calculator."}],
        tools=tools, max_tokens=96)
    assert result.tool_calls, result.text
    expr = result.tool_calls[0].arguments["expression"].replace(" ", "")
    assert "17" in expr and "24" in expr
