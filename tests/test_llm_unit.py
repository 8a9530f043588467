"""Pure helpers of the model layer and the scripted fake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import OutputParseError
from agent.model.llm import (
    ChatModel,
    ToolCall,
    parse_json_lenient,
    plain_messages,
    schema_token_budget,
    tool_call_schema,
)
from tests.fakes import ScriptedModel


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('  {"a": "x\ny"}  trailing', {"a": "x\ny"}),  # raw newline inside a string
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure! {"tool": "reply", "content": "4"}', {"tool": "reply", "content": "4"}),
        ("[1, 2]", [1, 2]),
    ],
)
def test_parse_json_lenient_accepts(raw, expected):
    assert parse_json_lenient(raw) == expected


@pytest.mark.parametrize("raw", ["", "no json here", '{"a": ', "{'a': 1}"])
def test_parse_json_lenient_rejects_with_a_message_for_the_model(raw):
    with pytest.raises(OutputParseError) as info:
        parse_json_lenient(raw)
    assert info.value.raw == raw


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=5))
def test_parse_json_lenient_round_trips(obj):
    import json

    assert parse_json_lenient(json.dumps(obj)) == obj


def test_schema_budget_covers_string_lengths():
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 300}, "b": {"type": "string", "maxLength": 500}}}
    assert schema_token_budget(schema, 64) > 800
    assert schema_token_budget({"type": "object"}, 64) == 64


def test_tool_call_schema_lists_every_tool_and_reply():
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ("calculator", "python")]
    schema = tool_call_schema(tools, allow_text=True)
    names = [opt["properties"]["tool"]["enum"][0] for opt in schema["anyOf"]]
    assert names == ["calculator", "python", "reply"]
    single = tool_call_schema(tools[:1], allow_text=False)
    assert single["properties"]["tool"]["enum"] == ["calculator"]


def test_plain_messages_rewrites_tool_turns_and_never_sends_null_content():
    call = ToolCall(name="calculator", arguments={"expression": "1+1"}, id="c1")
    msgs = plain_messages([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call.as_message_part()]},
        {"role": "tool", "name": "calculator", "tool_call_id": "c1", "content": "2"},
    ])
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert '"calculator"' in msgs[1]["content"] and msgs[2]["content"].startswith("[calculator result]")
    assert all(isinstance(m["content"], str) for m in msgs)


def test_scripted_model_is_a_chat_model_and_decodes_tool_calls():
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    model = ScriptedModel(['{"tool": "calculator", "arguments": {"expression": "2*3"}}',
                           '{"tool": "reply", "content": "6"}'])
    assert isinstance(model, ChatModel)
    first = model.complete([{"role": "user", "content": "2*3?"}], tools=tools)
    assert first.tool_calls[0].arguments == {"expression": "2*3"}
    second = model.complete([{"role": "user", "content": "2*3?"}], tools=tools)
    assert second.tool_calls == [] and second.text == "6"
    assert model.usage.calls == 2
    with pytest.raises(AssertionError, match="ran out"):
        model.complete([{"role": "user", "content": "again"}])


def test_scripted_model_unknown_tool_goes_back_as_parse_error():
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    model = ScriptedModel(['{"tool": "rm_rf", "arguments": {}}'])
    with pytest.raises(OutputParseError, match="unknown tool"):
        model.complete([{"role": "user", "content": "x"}], tools=tools)
