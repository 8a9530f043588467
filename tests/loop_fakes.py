"""A scripted model for the loop that decides from the task and the declared request, never from
prompt wording.

Which task is asked: the first user message is the question, looked up in the suite's tasks.
Whether the answer is right is the task's own property: right on tasks with an even hash, and on
any task once the system message carries a stored worked example (the text of a train question
appears in it: data the loop put there, not a heading). So exemplars measurably help, and the
gate has something real to detect.

How the answer is given is another property of the task (`behaviour`), so the loop's episodes go
through every path of the solver: the answer stated in the reasoning, a JSON final answer, a
calculator call, a malformed act reply then a recovery, a final answer written as arithmetic
(settled by the calculator), and tool calls until only "final_answer" is allowed (forced).
A request is recognised by its schema: the failure analysis has "mistake", the act turn "action"
(its enum says which actions remain), and the free-text reasoning has none.
"""

from __future__ import annotations

import hashlib
import json

from agent.tasks import get_suite
from tests.fakes import ScriptedModel, TickClock

BEHAVIOURS = ("concluded", "final", "tool", "malformed", "settle", "forced")


def answers_by_question(suite_name: str = "arith") -> dict[str, str]:
    suite = get_suite(suite_name)
    out = {}
    for split in ("train", "dev"):
        for task in suite.load(split, limit=None if split == "train" else 200):
            out[task.question] = task.answer
    return out


def train_questions(suite_name: str = "arith") -> list[str]:
    return [t.question for t in get_suite(suite_name).load("train", limit=None)]


def _byte(text: str, i: int) -> int:
    return hashlib.sha256(text.encode()).digest()[i]


def _even(text: str) -> bool:
    return _byte(text, 0) % 2 == 0


def behaviour(question: str) -> str:
    return BEHAVIOURS[_byte(question, 1) % len(BEHAVIOURS)]


def _helped(system: str, train: list[str]) -> bool:
    return any(q in system for q in train)


def loop_model(answers: dict[str, str], *, kill_after: int | None = None,
               train: list[str] | None = None) -> ScriptedModel:
    calls = {"n": 0}
    train = train if train is not None else train_questions()

    def respond(messages, kwargs):
        calls["n"] += 1
        if kill_after is not None and calls["n"] > kill_after:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        props = (kwargs.get("schema") or {}).get("properties", {})
        if "mistake" in props:
            return json.dumps({"mistake": "added instead of multiplying", "op": "add", "target": 0,
                               "rule": "Multiply the count by the unit price before adding extras."})
        question = next((m["content"] for m in messages if m["role"] == "user"), "")
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        reference = answers.get(question)
        right = reference is not None and (_helped(system, train) or _even(question))
        # A wrong answer is "0" (as in the fake this one replaced, so recorded counts carry over;
        # a task whose reference is 0 is then right by accident, as it was there).
        answer = reference if right else "0"
        how = behaviour(question)
        # Turns already taken in this solve: the assistant messages after the question.
        turns = sum(m["role"] == "assistant" for m in messages[2:])
        if "action" not in props:  # the free-text reasoning turn
            if how == "concluded":
                return f"Let me compute it step by step. The answer is {answer}."
            return "Let me work it out step by step."
        allowed = props["action"].get("enum", [])
        if how == "malformed" and turns == 1:
            return '{"action": "final_answer", "input": '  # cut off: does not parse
        if how in ("tool", "forced") and "calculator" in allowed:
            if how == "forced" or turns == 1:
                return {"action": "calculator", "input": f"{answer} + 0"}
        if how == "settle" and _number(answer):
            return {"action": "final_answer", "input": f"{answer} - 0"}
        return {"action": "final_answer", "input": answer}

    return ScriptedModel(respond, name="loop-fake", fingerprint="fake:loop", clock=TickClock(0.05))


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
