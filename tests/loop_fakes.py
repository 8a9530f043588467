"""A scripted model for the loop: right on train tasks with an even hash, right on dev tasks
only when worked examples are in the prompt. So exemplars measurably help, and the gate has
something real to detect."""

from __future__ import annotations

import hashlib
import json

from agent.tasks import get_suite
from tests.fakes import ScriptedModel


def answers_by_question(suite_name: str = "arith") -> dict[str, str]:
    suite = get_suite(suite_name)
    out = {}
    for split in ("train", "dev"):
        for task in suite.load(split, limit=None if split == "train" else 200):
            out[task.question] = task.answer
    return out


def _even(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0


def loop_model(answers: dict[str, str], *, kill_after: int | None = None) -> ScriptedModel:
    calls = {"n": 0}

    def respond(messages, kwargs):
        calls["n"] += 1
        if kill_after is not None and calls["n"] > kill_after:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        schema = kwargs.get("schema") or {}
        props = schema.get("properties", {})
        if "mistake" in props:
            return json.dumps({"mistake": "added instead of multiplying", "op": "add", "target": 0,
                               "rule": "Multiply the count by the unit price before adding extras."})
        question = next((m["content"] for m in messages if m["role"] == "user"), "")
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        reference = answers.get(question)
        helped = "Worked examples" in system
        right = reference is not None and (helped or _even(question))
        if "action" not in props:
            return f"Let me compute it step by step. The answer is {reference if right else 0}."
        return json.dumps({"action": "final_answer", "input": reference if right else "-1"})

    return ScriptedModel(respond, name="loop-fake", fingerprint="fake:loop")
