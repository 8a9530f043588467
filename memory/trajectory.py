"""What happened in one episode, as typed steps: the one shape every reader walks.

The solver appends steps as it works; an Episode stores them as JSON (`to_stored`). Readers
never walk the raw dicts: they load a `Trajectory` and ask for the view they need, the chat
messages a fine-tuning row is made of (`to_messages`), a worked example (`exemplar_text`), the
attempt a failure analysis reads (`attempt_text`), or the work a chat reply summarises.

Stored episodes written before this module used dicts keyed by "type" (and a few test rows by
"role"); `upgrade_legacy` converts them, used by the named schema migration.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter

FINAL = "final_answer"


class Prompt(BaseModel):
    kind: Literal["prompt"] = "prompt"
    system: str = ""
    question: str = ""


class Thought(BaseModel):
    """Free-text reasoning (the think-first turn)."""

    kind: Literal["thought"] = "thought"
    text: str


class Action(BaseModel):
    """A decided action: a tool call, or the final answer. `source` says which turn decided it
    ("thought": the reasoning already stated the answer, no act turn was made)."""

    kind: Literal["action"] = "action"
    action: str
    input: str = ""
    thought: str = ""
    source: Literal["act", "thought"] = "act"
    call_id: str = ""
    arguments: str = ""  # the tool's JSON arguments as invoked ("" for the final answer)


class Observation(BaseModel):
    kind: Literal["observation"] = "observation"
    tool: str
    ok: bool = True
    content: str = ""
    untrusted: bool = False
    seconds: float = 0.0
    call_id: str = ""


class ParseError(BaseModel):
    """A reply that did not parse as an action; it went back to the model as feedback."""

    kind: Literal["parse_error"] = "parse_error"
    error: str
    raw: str = ""


class Settled(BaseModel):
    """A final answer written as arithmetic, worked out by the calculator."""

    kind: Literal["settled"] = "settled"
    expression: str
    value: str


class Reply(BaseModel):
    """What chat said to the person after the work."""

    kind: Literal["reply"] = "reply"
    text: str


Step = Annotated[Union[Prompt, Thought, Action, Observation, ParseError, Settled, Reply],
                 Field(discriminator="kind")]
_steps = TypeAdapter(list[Step])


class Trajectory(BaseModel):
    steps: list[Step] = Field(default_factory=list)

    # -- storage ----------------------------------------------------------------------------

    @classmethod
    def from_stored(cls, data: list[dict[str, Any]] | None) -> Trajectory:
        items = list(data or [])
        if is_legacy(items):
            items = upgrade_legacy(items)
        return cls(steps=_steps.validate_python(items))

    def to_stored(self) -> list[dict[str, Any]]:
        return [s.model_dump() for s in self.steps]

    def append(self, step: Step) -> None:
        self.steps.append(step)

    def of(self, kind: type) -> list:
        return [s for s in self.steps if isinstance(s, kind)]

    @property
    def prompt(self) -> Prompt | None:
        return next((s for s in self.steps if isinstance(s, Prompt)), None)

    # -- views ------------------------------------------------------------------------------

    def to_messages(self, *, final_answer: str | None = None, with_errors: bool = False,
                    question: str = "") -> list[dict[str, Any]]:
        """OpenAI chat messages: system, user, then the assistant's reasoning, its tool calls
        (with ids) and their results (role "tool", `tool_call_id`), and the final answer.

        Parse errors are left out unless `with_errors`: a training row should not teach
        malformed output. A reply (chat) replaces the final answer as the last message.
        """
        out: list[dict[str, Any]] = []
        prompt = self.prompt
        if prompt is not None and prompt.system:
            out.append({"role": "system", "content": prompt.system})
        asked = (prompt.question if prompt is not None else "") or question
        if asked:
            out.append({"role": "user", "content": asked})
        reasoning: list[str] = []
        answered = False

        def said() -> str | None:
            text = "\n\n".join(t for t in (r.strip() for r in reasoning) if t)
            reasoning.clear()
            return text or None

        steps = self.steps
        for i, step in enumerate(steps):
            if isinstance(step, Thought):
                reasoning.append(step.text)
            elif isinstance(step, ParseError) and with_errors:
                content = said()
                out.append({"role": "assistant", "content": (content + "\n\n" if content else "")
                            + (step.raw or "(empty)")})
                out.append({"role": "user", "content": f"That reply did not parse: {step.error}"})
            elif isinstance(step, Action) and step.action != FINAL:
                reasoning.append(step.thought)
                out.append({"role": "assistant", "content": said(), "tool_calls": [
                    _call(step.call_id or f"call_{i}", step.action, step.arguments or _as_arguments(step.input))]})
            elif isinstance(step, Observation):
                out.append({"role": "tool", "tool_call_id": step.call_id or _last_call_id(out),
                            "content": step.content})
            elif isinstance(step, Action):
                if step.source == "act":
                    reasoning.append(step.thought)
                nxt = steps[i + 1] if i + 1 < len(steps) else None
                if isinstance(nxt, Settled):
                    call_id = f"call_{i}"
                    out.append({"role": "assistant", "content": said(), "tool_calls": [
                        _call(call_id, "calculator", json.dumps({"expression": nxt.expression}))]})
                    out.append({"role": "tool", "tool_call_id": call_id, "content": nxt.value})
                    out.append({"role": "assistant", "content": nxt.value})
                else:
                    content = said()
                    if step.source == "thought" and content:
                        out.append({"role": "assistant", "content": content})  # it states the answer
                    else:
                        out.append({"role": "assistant", "content": "\n\n".join(
                            t for t in (content, step.input) if t)})
                answered = True
            elif isinstance(step, Reply):
                if answered and out and out[-1]["role"] == "assistant" and not out[-1].get("tool_calls"):
                    out[-1] = {"role": "assistant", "content": step.text}
                else:
                    out.append({"role": "assistant", "content": step.text})
                answered = True
        if not answered and final_answer:
            content = said()
            out.append({"role": "assistant", "content": "\n\n".join(t for t in (content, final_answer) if t)})
        return out

    def exemplar_text(self, question: str, answer: str) -> str:
        """A verified episode as a compact worked example: the reasoning, then the answer."""
        lines = []
        for step in self.steps:
            if isinstance(step, Thought):
                lines.append(step.text.strip())
            elif isinstance(step, Action) and step.action != FINAL:
                lines.append(f"[{step.action}] {step.input}")
            elif isinstance(step, Observation):
                lines.append(f"[result] {step.content[:200]}")
            elif isinstance(step, Action) and step.thought:
                lines.append(step.thought.strip())
        body = "\n".join(s for s in lines if s)
        return f"Question: {question}\nSolution: {body}\nThe answer is {answer}."

    def attempt_text(self, limit: int = 1500) -> str:
        """The attempt as a failure analysis reads it: reasoning, actions, results (the tail)."""
        parts = []
        for step in self.steps:
            if isinstance(step, Thought):
                parts.append(step.text)
            elif isinstance(step, Action):
                parts.append(f"[{step.action}] {step.input}")
            elif isinstance(step, Observation):
                parts.append(f"[result] {step.content[:200]}")
        return "\n".join(parts)[-limit:]

    def work_summary(self) -> list[str]:
        """The tool work, one line per call or result, for a reply to build on."""
        work = []
        for step in self.steps:
            if isinstance(step, Action) and step.action != FINAL:
                work.append(f"called {step.action}({step.input})")
            elif isinstance(step, Observation):
                work.append(f"got {step.content[:300]}")
        return work


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _as_arguments(text: str) -> str:
    try:
        if isinstance(json.loads(text), dict):
            return text
    except ValueError:
        pass
    return json.dumps({"input": text})


def _last_call_id(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("tool_calls"):
            return m["tool_calls"][-1]["id"]
    return ""


# -- stored episodes from before the typed trajectory ----------------------------------------


def is_legacy(items: list[Any]) -> bool:
    return any(isinstance(x, dict) and "kind" not in x and ("type" in x or "role" in x) for x in items)


def upgrade_legacy(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Old dict trajectories in the new stored form.

    Solver-written rows used a "type" key ("from": "thought" on an action the reasoning decided);
    a few rows hold chat messages ("role"), which become a prompt, tool calls and results, and
    a final answer (the last plain assistant message) after reasoning.
    """
    out: list[dict[str, Any]] = []
    open_call = ""
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "kind" in item:
            out.append(item)
            continue
        if "type" in item:
            step = {k: v for k, v in item.items() if k not in ("type", "from")}
            step["kind"] = item["type"]
            if item["type"] == "action":
                step["source"] = "thought" if item.get("from") == "thought" else "act"
                if item.get("action") != FINAL:
                    open_call = step["call_id"] = f"call_{i}"
            elif item["type"] == "observation":
                step["call_id"] = open_call
            out.append(step)
        else:
            out.extend(_from_message(item, i, items, out))
    return out


def _from_message(m: dict[str, Any], i: int, items: list[dict[str, Any]], done: list[dict]) -> list[dict]:
    role, content = m.get("role"), str(m.get("content") or "")
    prompt = next((s for s in done if s.get("kind") == "prompt"), None)
    if role in ("system", "user"):
        if prompt is None:
            prompt = {"kind": "prompt", "system": "", "question": ""}
            done.insert(0, prompt)
        field = "system" if role == "system" else "question"
        if not prompt[field]:
            prompt[field] = content
            return []
        return [{"kind": "thought", "text": content}] if content else []
    if role == "tool":
        return [{"kind": "observation", "tool": str(m.get("name", "tool")), "content": content,
                 "call_id": str(m.get("tool_call_id", ""))}]
    if role != "assistant":
        return []
    steps: list[dict] = []
    calls = m.get("tool_calls") or []
    if content and (calls or any(x.get("role") == "assistant" for x in items[i + 1:] if isinstance(x, dict))):
        steps.append({"kind": "thought", "text": content})
    elif content:
        steps.append({"kind": "action", "action": FINAL, "input": content})
    for c in calls:
        fn = c.get("function", {})
        args = fn.get("arguments", "")
        steps.append({"kind": "action", "action": fn.get("name", ""), "call_id": c.get("id", ""),
                      "arguments": args if isinstance(args, str) else json.dumps(args),
                      "input": args if isinstance(args, str) else json.dumps(args)})
    return steps
