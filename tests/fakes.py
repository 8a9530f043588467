"""Test doubles for the model layer. Product code never imports this module."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from agent.model.llm import (
    Completion,
    Message,
    ToolCall,
    Usage,
    _calls_from_object,
    parse_json_lenient,
    sample_sequentially,
)

Step = Any  # str | dict | ToolCall | list[ToolCall] | BaseException | Callable


class TickClock:
    """A clock that moves `step` seconds each time it is read: latencies without sleeping."""

    def __init__(self, step: float = 0.01, start: float = 0.0) -> None:
        self.step = step
        self.now = start

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class ScriptedModel:
    """A ChatModel that answers from a script, or from a function of the messages.

    A step may be: a string (the reply text; decoded when a schema or tools were given), a
    dict (a decoded structured reply), a ToolCall or list of them, an exception (raised), or a
    callable `(messages, kwargs) -> step`. Every call is recorded in `.calls`, and its usage
    carries a latency read from `clock` (by default a TickClock: each call takes 0.01 s).
    """

    def __init__(self, script: Iterable[Step] | Callable[[list[Message], dict], Step],
                 *, name: str = "scripted", fingerprint: str = "fake:scripted",
                 clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or TickClock()
        self._fn = script if callable(script) else None
        self._steps = None if callable(script) else list(script)
        self.name = name
        self.fingerprint = fingerprint
        self.usage = Usage()
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []
        self.many_calls: list[tuple[list[Message], dict[str, Any]]] = []  # complete_many requests

    def _next(self, messages: list[Message], kwargs: dict[str, Any]) -> Step:
        self.calls.append((messages, kwargs))
        step = self._fn(messages, kwargs) if self._fn else self._pop()
        while callable(step) and not isinstance(step, type):
            step = step(messages, kwargs)
        if isinstance(step, BaseException):
            raise step
        return step

    def _pop(self) -> Step:
        if not self._steps:
            raise AssertionError("ScriptedModel: the script ran out of steps")
        return self._steps.pop(0)

    def complete(self, messages: Sequence[Message], *, schema=None, tools=None, tool_choice="auto",
                 max_tokens=None, temperature=None, stop=None, seed=None) -> Completion:
        kwargs = dict(schema=schema, tools=tools, tool_choice=tool_choice, max_tokens=max_tokens,
                      temperature=temperature, stop=stop, seed=seed)
        started = self.clock()
        step = self._next(list(messages), kwargs)
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
        result = Completion(text="", usage=Usage(calls=1), model=self.name, fingerprint=self.fingerprint)
        if isinstance(step, ToolCall):
            step = [step]
        if isinstance(step, list):
            result.tool_calls = list(step)
            result.text = ""
        elif isinstance(step, dict):
            result.parsed = step
            result.text = json.dumps(step)
        else:
            result.text = str(step)
            if schema is not None or tools:
                result.parsed = parse_json_lenient(result.text)
        if tools and result.parsed is not None and not result.tool_calls:
            names = {t.get("function", t)["name"] for t in tools}
            result.tool_calls, result.text = _calls_from_object(result.parsed, names)
        result.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=max(1, len(result.text) // 4),
                             latency_s=self.clock() - started, calls=1)
        self.usage.add(result.usage)
        return result

    def complete_many(self, messages: Sequence[Message], n: int, *, max_tokens=None, temperature=None,
                      seed=None) -> list[Completion]:
        """n samples: recorded once in `.many_calls`, then answered as n completions (each also in
        `.calls`, with its own seed), as a backend's sequential default would."""
        self.many_calls.append((list(messages), dict(n=n, max_tokens=max_tokens, temperature=temperature,
                                                     seed=seed)))
        return sample_sequentially(self, messages, n, max_tokens=max_tokens, temperature=temperature,
                                   seed=seed)

    def stream(self, messages: Sequence[Message], *, max_tokens=None, temperature=None,
               stop=None) -> Iterator[str]:
        started = self.clock()
        step = self._next(list(messages), dict(max_tokens=max_tokens, stream=True))
        text = str(step)
        pieces = text.split(" ")
        for i, word in enumerate(pieces):
            yield word if i == len(pieces) - 1 else word + " "
        self.usage.add(Usage(prompt_tokens=1, completion_tokens=len(pieces), latency_s=self.clock() - started,
                             calls=1))
