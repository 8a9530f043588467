"""Turn a typed Python function into a tool the model can call.

The JSON schema comes from the signature (through pydantic) and the parameter descriptions from
the docstring's `Args:` section, so the schema cannot drift from the code. `Tool.invoke` is the
only door the agent uses, and it never raises for bad arguments or a failing tool: the model gets
a message it can act on instead.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ConfigDict, Field, ValidationError, create_model

from tools.errors import ToolInputError

__all__ = ["Tool", "ToolResult", "tool", "parse_docstring"]

# Tool output beyond this is cut before it reaches the model's context.
MAX_CONTENT_CHARS = 20_000


@dataclass
class ToolResult:
    ok: bool
    content: str
    # True when content comes from outside (web pages): the prompt builder fences it as data.
    untrusted: bool = False
    data: dict = field(default_factory=dict)


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?|Attributes)\s*:\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and per-argument descriptions."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in lines:
        stripped = raw.strip()
        header = _SECTION.match(stripped)
        if header and (len(raw) - len(raw.lstrip())) == 0:
            section = header.group(1).lower()
            current, arg_indent = None, None
            continue
        if section is None:
            summary.append(stripped)
            continue
        if section not in ("args", "arguments", "parameters") or not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = match.group(1).lstrip("*")
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = (args[current] + " " + stripped).strip()
    # The summary is the first paragraph plus any prose before the first section.
    text = "\n".join(summary).strip()
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n\n".join(paragraphs), args


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's auto-generated titles: they repeat the names and cost the model tokens."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
            else:
                out[key] = _strip_titles(value)
        return out
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    return schema


class Tool:
    """A callable with a name, a description and a JSON schema for its arguments."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ValueError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        summary, arg_docs = parse_docstring(inspect.getdoc(fn))
        self.description = description or summary
        if not self.description:
            raise ValueError(f"tool {self.name!r} needs a docstring or a description: the model reads it")
        self._model, self._accepts_kwargs = self._build_model(fn, arg_docs)
        self.parameters = _strip_titles(self._model.model_json_schema())
        self.parameters.setdefault("properties", {})
        self.parameters["additionalProperties"] = False

    def _build_model(self, fn: Callable[..., Any], arg_docs: dict[str, str]):
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # an unresolvable annotation is a programming error
            raise ValueError(f"tool {self.name!r}: cannot resolve type hints: {exc}") from exc
        fields: dict[str, Any] = {}
        accepts_kwargs = False
        for pname, param in sig.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                accepts_kwargs = True
                continue
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                raise ValueError(f"tool {self.name!r}: *{pname} cannot be expressed as JSON arguments")
            if pname not in hints:
                raise ValueError(f"tool {self.name!r}: parameter {pname!r} needs a type annotation")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints[pname], Field(default, description=arg_docs.get(pname) or None))
        model = create_model(
            f"{self.name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        return model, accepts_kwargs

    def openai_schema(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"

    def _usage(self) -> str:
        props = self.parameters.get("properties", {})
        required = set(self.parameters.get("required", []))
        parts = []
        for pname, spec in props.items():
            kind = spec.get("type") or "value"
            parts.append(f"{pname} ({kind}{', required' if pname in required else ''})")
        return f"{self.name} takes a JSON object with: " + (", ".join(parts) if parts else "no arguments")

    def _explain(self, exc: ValidationError) -> str:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(arguments)"
            kind = err.get("type", "")
            if kind == "missing":
                problems.append(f"missing required argument '{loc}'")
            elif kind == "extra_forbidden":
                allowed = ", ".join(self.parameters.get("properties", {})) or "none"
                problems.append(f"unknown argument '{loc}' (allowed: {allowed})")
            else:
                got = _short(err.get("input"))
                problems.append(f"argument '{loc}' = {got}: {err.get('msg', 'invalid')}")
        return f"invalid arguments for {self.name}: " + "; ".join(problems) + f". {self._usage()}."

    def invoke(self, arguments: dict | str | None) -> ToolResult:
        """Validate `arguments` (a dict or a JSON object string) and run the tool."""
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                return ToolResult(
                    ok=False,
                    content=f"arguments for {self.name} are not valid JSON ({exc.msg} at position {exc.pos}): "
                    f"{_short(arguments)}. {self._usage()}.",
                )
        if not isinstance(arguments, dict):
            return ToolResult(
                ok=False,
                content=f"arguments for {self.name} must be a JSON object, got {type(arguments).__name__} "
                f"{_short(arguments)}. {self._usage()}.",
            )
        try:
            validated = self._model.model_validate(arguments)
        except ValidationError as exc:
            return ToolResult(ok=False, content=self._explain(exc))
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        try:
            result = self.fn(**kwargs)
        except (ToolInputError, ValueError, TypeError, ArithmeticError) as exc:
            return ToolResult(ok=False, content=f"{self.name} error: {exc}")
        except Exception as exc:
            # The loop must survive any tool failure; the model sees what went wrong.
            return ToolResult(ok=False, content=f"{self.name} failed: {type(exc).__name__}: {exc}")
        return _as_result(result)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        result = value
    elif isinstance(value, str):
        result = ToolResult(ok=True, content=value)
    else:
        try:
            result = ToolResult(ok=True, content=json.dumps(value, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            result = ToolResult(ok=True, content=str(value))
    if len(result.content) > MAX_CONTENT_CHARS:
        cut = len(result.content) - MAX_CONTENT_CHARS
        result.content = result.content[:MAX_CONTENT_CHARS] + f"\n[... {cut} characters cut ...]"
    return result


@typing.overload
def tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool: ...


@typing.overload
def tool(fn: None = None, *, name: str | None = None, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(fn=None, *, name=None, description=None):
    """Make a `Tool` from a typed function; works bare (`@tool`), with options, or called at runtime."""
    if fn is None:
        return lambda f: Tool(f, name=name, description=description)
    return Tool(fn, name=name, description=description)
