"""The acting agent: a LangGraph subgraph (model node <-> tool node) with step and token budgets.

Each model turn is one JSON object {"thought", "action", "input"} constrained by a schema, a
flat shape a 0.5B model fills reliably. A reply that does not parse goes back to the model as
an observation; at the step or token budget only "final_answer" remains allowed.
"""

from __future__ import annotations

import contextvars
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agent import prompts, provenance
from agent.errors import OutputParseError
from agent.model.llm import ChatModel, Usage
from agent.policy import PROGRAM_MODES, PolicySpec
from memory.trajectory import Action, Observation, ParseError, Prompt, Settled, Step, Thought, Trajectory
from tools.base import ToolResult

FINAL = "final_answer"
# "The answer is N." (or, where a number is due, a bare "N"): the prompt's template, not an answer.
_PLACEHOLDER = re.compile(r"\s*(?i:the\s+answer\s+is)\s*:?\s*N\s*\.?\s*")
_BARE_PLACEHOLDER = re.compile(r"\s*N\s*\.?\s*")
# A final answer this long that is a verbatim span of untrusted data is the data, not an answer.
_COPY_MIN_WORDS = 6
Event = Callable[[str, dict[str, Any]], None]


def action_schema(tool_names: Sequence[str], *, final_only: bool, with_thought: bool = True,
                  thought_chars: int = 700, input_chars: int = 400) -> dict[str, Any]:
    # maxLength makes the grammar close each string in time: without it a small model's
    # reasoning runs past max_tokens and the reply is cut mid-string (measured on the 0.5B).
    names = [FINAL] if final_only else [*tool_names, FINAL]
    schema = {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": thought_chars},
            "action": {"type": "string", "enum": names},
            "input": {"type": "string", "maxLength": input_chars},
        },
        "required": ["thought", "action", "input"],
    }
    if not with_thought:
        del schema["properties"]["thought"]
        schema["required"] = ["action", "input"]
    return schema


@dataclass
class Context:
    """What the prompt shows besides the question: chosen by the policy and the store."""

    insights: list[str] = field(default_factory=list)
    exemplars: list[str] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    experience_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """Per-solve settings, from the policy and the task's kind (never the suite's name)."""

    temperature: float = 0.0
    think: bool = True
    # Numeric tasks: reasoning that already states its answer ("The answer is 22", a boxed
    # number) ends the episode without an act turn. Measured on the 0.5B model, the act turn
    # after a finished derivation often called the calculator on a sub-step and lost the answer.
    numeric_answers: bool = True
    input_chars: int = 400

    @classmethod
    def of(cls, policy: PolicySpec, kind: str = "qa") -> Options:
        code = kind == "code"
        return cls(temperature=policy.temperature, think=policy.think_first,
                   numeric_answers=not code, input_chars=1500 if code else 400)


@dataclass
class SolveResult:
    final_answer: str
    trajectory: Trajectory
    steps: int
    usage: Usage
    forced: bool = False
    error: str = ""


class SolverState(TypedDict, total=False):
    messages: list[dict[str, Any]]
    trajectory: list[Step]
    steps: int
    tokens: int
    usage: Usage
    pending: Action | None
    final: str | None
    forced: bool
    options: Options
    on_event: Event
    # What may name an address for the browser (agent/provenance.py): the system prompt and the
    # question. Memories shown in the prompt are data, like tool output.
    trusted: str
    memories: list[str]


def _quiet(kind: str, data: dict[str, Any]) -> None:
    pass


class Solver:
    """Built once per (model, tools, step budget) and shared: everything that varies per
    solve (temperature, think-first, answer kind, event sink) travels in the graph state."""

    def __init__(self, model: ChatModel, tools: Sequence, *, max_steps: int = 4,
                 max_tokens_per_task: int = 2048, max_tokens_per_step: int = 400,
                 thought_chars: int = 700, sandbox=None) -> None:
        # Runs the programs of the program strategies and checks code (agent/strategies.py): a
        # sandbox, or a function making one on first use (a task that runs no program never
        # needs bubblewrap); None: one with default limits on first use.
        self.sandbox = sandbox
        self.thought_chars = thought_chars
        self.model = model
        self.tools = {t.name: t for t in tools}
        self.max_steps = max_steps
        self.max_tokens_per_task = max_tokens_per_task
        self.max_tokens_per_step = max_tokens_per_step
        self._graph = self._build()

    # --------------------------------------------------------------- graph

    def _build(self):
        g = StateGraph(SolverState)
        g.add_node("model", self._model_node)
        g.add_node("tools", self._tool_node)
        g.add_edge(START, "model")
        g.add_conditional_edges("model", self._route, {"tools": "tools", "model": "model", END: END})
        g.add_edge("tools", "model")
        return g.compile()

    def _route(self, state: SolverState) -> str:
        if state.get("final") is not None:
            return END
        if state.get("pending"):
            return "tools"
        if state["steps"] >= self.max_steps + 1:  # the forced turn also failed to parse
            return END
        return "model"

    def _model_node(self, state: SolverState) -> SolverState:
        opts, emit = state["options"], state["on_event"]
        steps = state["steps"] + 1
        final_only = steps >= self.max_steps or state["tokens"] >= self.max_tokens_per_task
        messages = list(state["messages"])
        trajectory = list(state["trajectory"])
        tokens, usage = state["tokens"], state["usage"]
        if final_only and steps > 1 and not state.get("forced"):
            messages.append({"role": "user", "content": prompts.FORCE_FINAL})
        if opts.think:
            # Reason in free text first: small models reason far better unconstrained than inside
            # a JSON string (measured on the 0.5B: LaTeX, runaway strings), then act in JSON.
            thought = self.model.complete(messages, max_tokens=self.max_tokens_per_step,
                                          temperature=opts.temperature)
            tokens += thought.usage.total_tokens
            usage = usage + thought.usage
            messages.append({"role": "assistant", "content": thought.text})
            trajectory.append(Thought(text=thought.text))
            emit("thought", {"text": thought.text})
            concluded = self._concluded(thought.text, opts)
            if concluded is not None:
                action = Action(action=FINAL, input=concluded, source="thought")
                trajectory.append(action)
                emit("action", _event(action))
                return {"messages": messages, "trajectory": trajectory, "steps": steps, "tokens": tokens,
                        "usage": usage, "forced": final_only, "final": concluded, "pending": None}
            ask = prompts.ACT_FINAL if final_only else prompts.act(list(self.tools.values()))
            act_messages = [*messages, {"role": "user", "content": ask}]
        else:
            act_messages = messages
        schema = action_schema(list(self.tools), final_only=final_only, with_thought=not opts.think,
                               thought_chars=self.thought_chars, input_chars=opts.input_chars)
        try:
            # The act turn only names an action; schema_token_budget lifts this to fit maxLength.
            out = self.model.complete(act_messages, schema=schema,
                                      max_tokens=64 if opts.think else self.max_tokens_per_step,
                                      temperature=opts.temperature)
            tokens += out.usage.total_tokens
            usage = usage + out.usage
            action = _validate_action(out.parsed, self.tools, numeric=opts.numeric_answers)
            if action.action == FINAL and opts.numeric_answers and _copies_data(action.input, state, trajectory):
                # The defended 0.5B answers a number-word page by quoting its sentence
                # ("Twelve bells hang in the tower ..."; bench/injection.py item 35).
                raise OutputParseError("the final answer copies a sentence of the tool data; give only "
                                       "the value the question asks for, a number in digits",
                                       raw=json.dumps(out.parsed))
        except OutputParseError as exc:
            raw = exc.raw[:2000]
            trajectory.append(ParseError(error=str(exc), raw=raw))
            emit("parse_error", {"error": str(exc)})
            if opts.think:
                # The reasoning is kept: the next step continues from it.
                messages.append({"role": "user", "content": prompts.parse_error(str(exc))})
            else:
                messages += [{"role": "assistant", "content": raw or "(empty)"},
                             {"role": "user", "content": prompts.parse_error(str(exc))}]
            # A reply that failed to parse still spent its tokens; the model layer does not
            # return usage with the error, so its length stands in.
            return {"messages": messages, "trajectory": trajectory, "steps": steps, "usage": usage,
                    "tokens": tokens + len(raw) // 4, "pending": None, "forced": final_only}
        if action.action != FINAL:
            tool = self.tools[action.action]
            action.call_id = f"call_{len(trajectory)}"
            args = _arguments_for(tool, action.input)
            action.arguments = json.dumps(args) if isinstance(args, dict) else action.input
        trajectory.append(action)
        emit("action", _event(action))
        if opts.think:
            messages.append({"role": "user", "content": ask})
        messages.append({"role": "assistant", "content": json.dumps(_event(action))})
        update: SolverState = {"messages": messages, "trajectory": trajectory, "steps": steps,
                               "tokens": tokens, "usage": usage, "forced": final_only}
        if action.action == FINAL:
            update["final"] = self._settle(action.input, trajectory)
            update["pending"] = None
        else:
            update["pending"] = action
        return update

    def _tool_node(self, state: SolverState) -> SolverState:
        action = state["pending"]
        tool = self.tools[action.action]
        started = time.perf_counter()
        args = _arguments_for(tool, action.input)
        refused = self._refusal(tool, args, state)
        result = ToolResult(ok=False, content=refused) if refused else tool.invoke(args)
        observation = Observation(tool=tool.name, ok=result.ok, content=result.content[:4000],
                                  untrusted=result.untrusted, call_id=action.call_id,
                                  seconds=round(time.perf_counter() - started, 4))
        state["on_event"]("observation", observation.model_dump(exclude={"kind", "call_id"}))
        text = prompts.refused(refused) if refused else prompts.observation(
            tool.name, result.content[:4000], ok=result.ok, untrusted=result.untrusted)
        return {"messages": [*state["messages"], {"role": "user", "content": text}],
                "trajectory": [*state["trajectory"], observation], "pending": None}

    @staticmethod
    def _refusal(tool, args: dict[str, Any] | str, state: SolverState) -> str | None:
        """Tool output never chooses a call's address on its own authority: see agent/provenance.py."""
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return None  # not JSON: Tool.invoke sends the parse error back to the model
        data = [*state.get("memories", []),
                *(s.content for s in state["trajectory"] if isinstance(s, Observation))]
        # A browser's follow tool says itself where link n goes (tools/browser.py), so a page
        # cannot spoof the answer with link-like lines in its text.
        owner = getattr(getattr(tool, "fn", None), "__self__", None)
        return provenance.refusal(tool.name, args, trusted=state.get("trusted", ""), data=data,
                                  link_target=getattr(owner, "link_target", None))

    def _concluded(self, text: str, opts: Options) -> str | None:
        if not opts.numeric_answers:
            return None
        from agent.tasks.answers import extract_answer, marked_answer

        marked = marked_answer(text)
        if marked is None:
            # The reasoning turn written as the act turn's JSON ({"action": "final_answer",
            # "input": "8"}): the 0.5B does this after a quoted page, and the act turn that
            # followed then re-opened the page instead of answering (bench/injection.py item 5).
            final = _json_final(text)
            return (extract_answer(final) or None) if final is not None else None
        value = extract_answer(text)
        return value or None

    def _settle(self, answer: str, trajectory: list[Step]) -> str:
        """A final answer written as arithmetic ("7 * 5 + 14") is worked out by the calculator:
        the 0.5B model often stops one evaluation short of the number."""
        calc = self.tools.get("calculator")
        stripped = answer.strip()
        if calc is None or not stripped or not any(op in stripped for op in "+-*/"):
            return answer
        result = calc.invoke({"expression": stripped})
        if result.ok:
            trajectory.append(Settled(expression=stripped, value=result.content))
            return result.content
        return answer

    # --------------------------------------------------------------- entry point

    def solve(self, question: str, policy: PolicySpec, context: Context | None = None, *,
              kind: str = "qa", entry_point: str = "", on_event: Event | None = None) -> SolveResult:
        """Solve by the policy's strategy genes; `kind` is the task's ("code": write the function)."""
        context = context or Context()
        emit = on_event or _quiet
        if policy.mode == "act" and policy.samples == 1 and kind != "code":
            return self._act(question, policy, context, policy.temperature, kind, emit)
        from agent import strategies

        return strategies.solve(self.model, question, policy, context, kind=kind,
                                entry_point=entry_point, sandbox=self._sandbox(policy, kind),
                                act=lambda temperature: self._act(question, policy, context, temperature,
                                                                  kind, emit),
                                on_event=emit)

    def _sandbox(self, policy: PolicySpec, kind: str):
        if kind != "code" and policy.mode not in PROGRAM_MODES:
            return self.sandbox if hasattr(self.sandbox, "run") else None
        if self.sandbox is None:
            from tools.sandbox import Sandbox

            self.sandbox = Sandbox()
        elif not hasattr(self.sandbox, "run"):
            self.sandbox = self.sandbox()
        return self.sandbox

    def _act(self, question: str, policy: PolicySpec, context: Context, temperature: float, kind: str,
             emit: Event) -> SolveResult:
        """The think-then-act tool graph, once, at `temperature`."""
        system = prompts.system_message(policy, list(self.tools.values()), insights=context.insights,
                                        exemplars=context.exemplars, skills=context.skills)
        state: SolverState = {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "trajectory": [Prompt(system=system, question=question)],
            "steps": 0, "tokens": 0, "usage": Usage(), "pending": None, "final": None, "forced": False,
            "options": replace(Options.of(policy, kind), temperature=temperature), "on_event": emit,
            "trusted": f"{policy.system_prompt}\n{question}",
            "memories": [*context.insights, *context.exemplars, *context.skills],
        }
        # Each step is a model node plus at most one tool node.
        # Run in an empty context: invoked inside a node of the checkpointed loop, the subgraph
        # would otherwise inherit the loop's checkpointer through the context and, after a
        # resume, replay a stale earlier solve instead of solving (seen in the kill tests).
        final_state = contextvars.Context().run(
            self._graph.invoke, state, {"recursion_limit": 2 * self.max_steps + 6})
        final = final_state.get("final")
        emit("final", {"answer": final or ""})
        return SolveResult(
            final_answer=final or "", trajectory=Trajectory(steps=final_state["trajectory"]),
            steps=final_state["steps"], usage=final_state["usage"], forced=bool(final_state.get("forced")),
            error="" if final is not None else "no final answer within the step budget",
        )


def _event(action: Action) -> dict[str, str]:
    return {"thought": action.thought, "action": action.action, "input": action.input}


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _copies_data(answer: str, state: SolverState, trajectory: list[Step]) -> bool:
    """True when `answer` is a long verbatim span of tool output or a memory (case and
    punctuation aside): short answers ("1932", "St Aldric") are always kept."""
    said = _words(answer)
    if len(said.split()) < _COPY_MIN_WORDS:
        return False
    data = [*state.get("memories", []), *(s.content for s in trajectory if isinstance(s, Observation) and s.untrusted)]
    return any(said in _words(d) for d in data)


def _json_final(text: str) -> str | None:
    """The input of a final_answer action written out as a JSON object in free text, else None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("action") != FINAL or not isinstance(obj.get("input"), (str, int, float)):
        return None
    return str(obj["input"])


def _validate_action(parsed: Any, tools: dict, *, numeric: bool = False) -> Action:
    if not isinstance(parsed, dict):
        raise OutputParseError("expected a JSON object", raw=json.dumps(parsed))
    action = parsed.get("action")
    if action != FINAL and action not in tools:
        raise OutputParseError(f"unknown action {action!r}; use one of {[*tools, FINAL]}",
                               raw=json.dumps(parsed))
    value = parsed.get("input", "")
    if not isinstance(value, str):
        value = json.dumps(value)
    if action == FINAL and (_PLACEHOLDER.fullmatch(value) or (numeric and _BARE_PLACEHOLDER.fullmatch(value))):
        # The system prompt's own template ("End with: The answer is N."), copied unfilled: the
        # 0.5B does this on a page that spells its number as a word (bench/injection.py item 19).
        raise OutputParseError("the final answer is the placeholder N from the instructions; give the "
                               "value itself", raw=json.dumps(parsed))
    return Action(thought=str(parsed.get("thought", "")), action=action, input=value)


def _arguments_for(tool, text: str) -> dict[str, Any] | str:
    """Single-argument tools take the input string as that argument; others take JSON."""
    props = list(tool.parameters.get("properties", {}))
    if len(props) == 1:
        return {props[0]: text}
    return text  # Tool.invoke parses JSON and reports bad input back to the model
