"""Training rows in the exact turn structure the solver sends at inference, per policy mode.

A fine-tuned model is asked its questions by agent/solver.py and agent/strategies.py, not as
OpenAI tool-call chats: the act graph sends the system message, the question, a free-text
reasoning turn, then (unless the reasoning stated the answer) an act request and a JSON action,
tool results as fenced user turns. A row trained in another shape teaches turns the model never
takes. So a row is rebuilt from the typed trajectory with the same prompt builders
(agent/prompts.py) the solver uses; the stored system message is the one that was sent.

Rows the solver's structure cannot be recovered for are left out (None), never approximated:
a parse error without think-first (the malformed reply was in the history; it must not be a
target), an act policy with k > 1
samples (the stored system message is the voting wrapper's, not the act graph's), a program
answer that came from the reasoning fallback. Each assistant turn is what the model produced;
the calculator settling an arithmetic answer afterwards is not a model turn and is left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent import prompts
from agent.policy import PolicySpec
from memory.trajectory import FINAL, Action, Observation, ParseError, Thought, Trajectory, Vote

Message = dict[str, str]


def inference_messages(trajectory: Trajectory, spec: PolicySpec, tools: Sequence, *, kind: str = "qa",
                       entry_point: str = "") -> list[Message] | None:
    """The chat the solver sent and the model answered, for `spec`'s mode; None when it cannot
    be rebuilt exactly. `tools` are the tool objects the solver had (the act request lists them)."""
    prompt = trajectory.prompt
    if prompt is None or not prompt.question or (trajectory.of(ParseError) and not spec.think_first):
        return None
    head = [{"role": "system", "content": prompt.system}] if prompt.system else []
    steps = [s for s in trajectory.steps if s is not prompt]
    if kind == "code":
        return _program_row(head, prompts.code_request(prompt.question, entry_point), steps)
    if spec.mode == "act":
        if spec.samples > 1 or trajectory.of(Vote):
            return None
        chosen = [t for t in tools if t.name in spec.tools]
        return _act_row(head + [{"role": "user", "content": prompt.question}], steps, spec, chosen)
    thoughts = [s for s in steps if isinstance(s, Thought)]
    # A mixed policy keeps the winning sample's steps under its own system message: reasoning
    # (one thought, no program) or a program.
    reasoned = spec.mode == "mixed" and thoughts and not any(isinstance(s, Action) and s.action == "python"
                                                             for s in steps)
    if spec.mode == "reason" or reasoned:
        if len(thoughts) != 1 or not thoughts[0].text.strip():
            return None
        return head + [{"role": "user", "content": prompt.question},
                       {"role": "assistant", "content": thoughts[0].text}]
    # program, program+reason, mixed: the answer must have come from a program.
    if thoughts:
        return None
    return _program_row(head, prompts.program_request(prompt.question), steps)


def _program_row(head: list[Message], request: str, steps: list) -> list[Message] | None:
    # The program that gave the answer, as the reply to the first request: the prompt is the
    # one inference sends first, and a repaired program is what that turn should have written.
    # (The model's prose around its code block is not stored; the block alone is the reply.)
    programs = [s for s in steps if isinstance(s, Action) and s.action == "python" and s.input.strip()]
    if not programs:
        return None
    code = programs[-1].input.strip()
    return head + [{"role": "user", "content": request},
                   {"role": "assistant", "content": f"```python\n{code}\n```"}]


def _act_json(action: Action, think: bool) -> str:
    # The act turn's schema (agent/solver.py action_schema): no "thought" with think-first.
    reply: dict[str, Any] = {} if think else {"thought": action.thought}
    reply.update(action=action.action, input=action.input)
    return json.dumps(reply)


def _act_row(messages: list[Message], steps: list, spec: PolicySpec, tools: Sequence) -> list[Message] | None:
    """Replay the act graph's turns (agent/solver.py _model_node and _tool_node) over the steps."""
    think = spec.think_first
    turn = 0
    i = 0
    answered = forced = False
    while i < len(steps) and not answered:
        turn += 1
        final_only = turn >= spec.max_steps
        if final_only and turn > 1 and not forced:
            messages.append({"role": "user", "content": prompts.FORCE_FINAL})
        forced = final_only
        step = steps[i]
        if think:
            if not isinstance(step, Thought):
                return None
            messages.append({"role": "assistant", "content": step.text})
            i += 1
            nxt = steps[i] if i < len(steps) else None
            if isinstance(nxt, Action) and nxt.source == "thought":
                return messages  # the reasoning stated the answer: no act turn was made
            if isinstance(nxt, ParseError):
                # The act reply did not parse: the solver keeps the reasoning, drops the request
                # and the reply, and feeds the error back; the next turn reasons again.
                messages.append({"role": "user", "content": prompts.parse_error(nxt.error)})
                i += 1
                continue
            ask = prompts.ACT_FINAL if final_only else prompts.act(list(tools))
            messages.append({"role": "user", "content": ask})
        action = steps[i] if i < len(steps) else None
        if not isinstance(action, Action) or action.source != "act":
            return None
        messages.append({"role": "assistant", "content": _act_json(action, think)})
        i += 1
        if action.action == FINAL:
            answered = True
            break
        obs = steps[i] if i < len(steps) else None
        if not isinstance(obs, Observation):
            return None
        messages.append({"role": "user", "content": prompts.observation(
            obs.tool, obs.content, ok=obs.ok, untrusted=obs.untrusted)})
        i += 1
    return messages if answered else None
