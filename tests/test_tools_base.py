"""The @tool decorator: schemas from signatures and docstrings, and invoke() never raising."""

from __future__ import annotations

from typing import Literal

import pytest

from agent.errors import ToolInputError
from tools.base import Tool, ToolResult, parse_docstring, tool


@tool
def add(a: int, b: int = 2, mode: Literal["fast", "exact"] = "exact") -> str:
    """Add two whole numbers.

    A second paragraph of detail.

    Args:
        a: The first number.
        b (int): The second number, which
            defaults to two.
        mode: How to add.

    Returns:
        The sum as text.
    """
    return str(a + b)


def test_schema_comes_from_signature_and_docstring() -> None:
    assert add.name == "add"
    assert add.description == "Add two whole numbers.\n\nA second paragraph of detail."
    params = add.parameters
    assert params["type"] == "object"
    assert params["required"] == ["a"]
    assert params["additionalProperties"] is False
    assert params["properties"]["a"] == {"type": "integer", "description": "The first number."}
    assert params["properties"]["b"]["description"] == "The second number, which defaults to two."
    assert params["properties"]["b"]["default"] == 2
    assert params["properties"]["mode"]["enum"] == ["fast", "exact"]
    assert "title" not in str(params)


def test_openai_schema_shape() -> None:
    schema = add.openai_schema()
    assert schema["type"] == "function"
    assert set(schema["function"]) == {"name", "description", "parameters"}
    assert schema["function"]["parameters"] is add.parameters


def test_invoke_with_dict_and_json_string() -> None:
    assert add.invoke({"a": 1, "b": 5}) == ToolResult(ok=True, content="6")
    assert add.invoke('{"a": 40}').content == "42"
    # Lax coercion helps small models that quote numbers.
    assert add.invoke({"a": "3"}).content == "5"


@pytest.mark.parametrize(
    "arguments, needle",
    [
        ('{"a": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({}, "missing required argument 'a'"),
        ({"a": 1, "c": 3}, "unknown argument 'c' (allowed: a, b, mode)"),
        ({"a": "three"}, "argument 'a' = 'three'"),
        ({"a": 1, "mode": "slow"}, "argument 'mode'"),
        (None, "missing required argument 'a'"),
    ],
)
def test_bad_arguments_become_observations(arguments, needle) -> None:
    result = add.invoke(arguments)
    assert result.ok is False
    assert needle in result.content
    assert "add takes a JSON object with: a (integer, required)" in result.content


def test_tool_failures_become_observations() -> None:
    @tool
    def boom(x: str) -> str:
        """Fail loudly.

        Args:
            x: Anything.
        """
        if x == "input":
            raise ToolInputError("x must not be 'input'; pass something else")
        raise RuntimeError("disk on fire")

    assert boom.invoke({"x": "input"}) == ToolResult(ok=False, content="boom error: x must not be 'input'; pass something else")
    result = boom.invoke({"x": "other"})
    assert not result.ok and "RuntimeError: disk on fire" in result.content


def test_bound_methods_and_runtime_names() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        def bump(self, by: int) -> ToolResult:
            """Increase the counter.

            Args:
                by: How much to add.
            """
            self.total += by
            return ToolResult(ok=True, content=str(self.total), untrusted=True, data={"total": self.total})

    counter = Counter()
    bump = tool(counter.bump, name="bump_counter")
    assert isinstance(bump, Tool)
    assert bump.name == "bump_counter"
    assert list(bump.parameters["properties"]) == ["by"]
    result = bump.invoke({"by": 3})
    assert result == ToolResult(ok=True, content="3", untrusted=True, data={"total": 3})
    assert counter.total == 3
    # Still callable directly.
    assert bump(2).content == "5"


def test_decorator_with_options_and_non_string_results() -> None:
    @tool(name="pairs", description="Make a pair.")
    def make_pair(x: int, y: list[int] | None = None) -> dict:
        return {"x": x, "y": y or []}

    assert make_pair.name == "pairs" and make_pair.description == "Make a pair."
    assert make_pair.invoke({"x": 1, "y": [2, 3]}).content == '{"x": 1, "y": [2, 3]}'


def test_long_output_is_cut() -> None:
    @tool
    def big() -> str:
        """Return a lot of text."""
        return "x" * 50_000

    result = big.invoke({})
    assert result.ok and len(result.content) < 21_000 and "characters cut" in result.content


def test_definition_errors_are_raised_early() -> None:
    def undocumented(x: int) -> str:
        return ""

    with pytest.raises(ValueError, match="docstring"):
        tool(undocumented)

    def untyped(x) -> str:
        """Do something."""
        return ""

    with pytest.raises(ValueError, match="type annotation"):
        tool(untyped)

    with pytest.raises(ValueError, match="tool name"):
        tool(add.fn, name="has space")


def test_parse_docstring_edges() -> None:
    assert parse_docstring(None) == ("", {})
    summary, args = parse_docstring("One line.\n\nArgs:\n    *args: ignored\n    x (int, optional): value\n")
    assert summary == "One line."
    assert args == {"args": "ignored", "x": "value"}
