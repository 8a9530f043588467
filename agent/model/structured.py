"""Structured output: the JSON helpers every backend shares, and the request forms an
OpenAI-compatible endpoint may accept for "answer with JSON matching this schema".

Endpoints disagree on the form. OpenAI takes `response_format={"type": "json_schema", ...}`;
llama-cpp-python's server rejects that with a 500 and takes `{"type": "json_object",
"schema": ...}`; some servers only constrain forced tool calls; some constrain nothing. The
model layer probes once per endpoint (see `probe_form`), caches the winner and builds each
request with `request_kwargs`. Replies are always parsed leniently and validated against the
schema, so an endpoint that ignores the constraint still cannot hand the agent a wrong shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from jsonschema import Draft202012Validator

from agent.errors import OutputParseError

Form = Literal["json_schema", "json_object", "tools", "prompt"]
# Best first: a native schema, llama.cpp's schema-in-json_object, a forced tool call, and last
# the schema written into the prompt (no constraint, only parse and validate).
FORMS: tuple[Form, ...] = ("json_schema", "json_object", "tools", "prompt")
OUTPUT_TOOL = "output"

# A schema no model satisfies by chance: an unconstrained reply will not guess the constant,
# so a probe that comes back valid shows the endpoint enforced the schema, not only accepted it.
PROBE_VALUE = "evolve-probe-7f3a"
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"probe": {"type": "string", "enum": [PROBE_VALUE]}},
    "required": ["probe"],
    "additionalProperties": False,
}
PROBE_MESSAGES = [
    {"role": "system", "content": "You answer with one JSON object."},
    {"role": "user", "content": "Reply with a JSON object."},
]


def parse_json_lenient(text: str) -> Any:
    """Decode the first JSON value in `text`.

    Grammar-constrained small models may put raw newlines inside strings (the grammar allows
    them) or trail whitespace; fenced blocks from unconstrained endpoints are accepted too.
    """
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    if fence:
        s = fence.group(1).strip()
    start = min((i for i in (s.find("{"), s.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise OutputParseError(f"expected a JSON object, got: {text[:200]!r}", raw=text)
    decoder = json.JSONDecoder(strict=False)
    try:
        value, _ = decoder.raw_decode(s[start:])
    except json.JSONDecodeError as exc:
        raise OutputParseError(
            f"output is not valid JSON ({exc.msg} at char {exc.pos}); reply with one JSON object "
            f"matching the schema",
            raw=text,
        ) from None
    return value


def check_schema(value: Any, schema: dict[str, Any], raw: str) -> None:
    """Raise OutputParseError (back to the model) naming the first place `value` breaks `schema`."""
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "the top level"
        raise OutputParseError(f"output does not match the schema at {where}: {first.message[:200]}",
                               raw=raw)


def schema_token_budget(schema: dict[str, Any], floor: int) -> int:
    """A max_tokens that cannot cut a schema-valid answer short (the issue with small caps)."""

    def walk(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        total = 8
        if node.get("type") == "string":
            total += int(node.get("maxLength", 0))
        for key in ("properties",):
            for sub in node.get(key, {}).values():
                total += walk(sub) + 4
        for key in ("anyOf", "oneOf"):
            if key in node:
                total += max((walk(sub) for sub in node[key]), default=0)
        if "items" in node:
            total += walk(node["items"]) * int(node.get("maxItems", 4))
        return total

    return max(floor, walk(schema))


def tool_call_schema(tools: Sequence[dict[str, Any]], *, allow_text: bool) -> dict[str, Any]:
    """One JSON schema that admits a call to any given tool (and a plain reply if allowed)."""
    options = []
    for spec in tools:
        fn = spec.get("function", spec)
        options.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "enum": [fn["name"]]},
                    "arguments": fn.get("parameters") or {"type": "object"},
                },
                "required": ["tool", "arguments"],
            }
        )
    if allow_text:
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"type": "string", "enum": ["reply"]}, "content": {"type": "string"}},
                "required": ["tool", "content"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_prompt(tools: Sequence[dict[str, Any]], *, allow_text: bool) -> str:
    lines = ["You can call these tools. Answer with one JSON object: "
             '{"tool": NAME, "arguments": {...}}.']
    for spec in tools:
        fn = spec.get("function", spec)
        lines.append(f"- {fn['name']}: {fn.get('description', '').strip()} "
                     f"arguments schema: {json.dumps(fn.get('parameters', {}))}")
    if allow_text:
        lines.append('To answer without a tool: {"tool": "reply", "content": "..."}.')
    return "\n".join(lines)


def schema_prompt(schema: dict[str, Any]) -> str:
    return ("Reply with one JSON object and nothing else. It must match this JSON schema:\n"
            + json.dumps(schema))


def _wrapped(schema: dict[str, Any]) -> bool:
    # Function parameters must be an object schema; anything else travels inside {"value": ...}.
    return schema.get("type") != "object"


def request_kwargs(form: Form, schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields that ask `form`'s way for output matching `schema`."""
    if form == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": OUTPUT_TOOL, "schema": schema, "strict": False}}}
    if form == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if form == "tools":
        params = ({"type": "object", "properties": {"value": schema}, "required": ["value"]}
                  if _wrapped(schema) else schema)
        return {"tools": [{"type": "function", "function": {
                    "name": OUTPUT_TOOL, "description": "Give the answer.", "parameters": params}}],
                "tool_choice": {"type": "function", "function": {"name": OUTPUT_TOOL}}}
    return {}


def reply_text(form: Form, schema: dict[str, Any], content: str | None, tool_calls: Any) -> str:
    """The JSON text of a structured reply, wherever the form puts it."""
    if form == "tools" and tool_calls:
        args = tool_calls[0].function.arguments or ""
        if _wrapped(schema):
            inner = parse_json_lenient(args)
            if isinstance(inner, dict) and "value" in inner:
                return json.dumps(inner["value"])
        return args
    return content or ""


def decode(form: Form, schema: dict[str, Any], content: str | None, tool_calls: Any) -> tuple[str, Any]:
    """(raw text, validated value) of a structured reply; OutputParseError when it is not one."""
    text = reply_text(form, schema, content, tool_calls)
    value = parse_json_lenient(text)
    check_schema(value, schema, text)
    return text, value
