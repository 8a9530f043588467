"""A scripted model for the candidate search, deciding from the request, not the prompt wording.

It reasons without stating an answer, so every task reaches the JSON act turn; there it is
right whenever the act schema offers the `python` action (a tool the incumbent lacks), and
otherwise only on questions with an even hash. So the `tools` candidate is truly better, the
others are not, and the gate has something real to find and something real to reject. The
reflective proposer's schema gets an instruction; refine's analysis schema gets an insight."""

from __future__ import annotations

import hashlib
import json

from tests.fakes import ScriptedModel

INSTRUCTION = "Check every intermediate result again before giving the final answer."


def _even(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0


def search_model(answers: dict[str, str], *, kill_after: int | None = None,
                 instruction: object = None, python_helps: bool = True) -> ScriptedModel:
    calls = {"n": 0}

    def respond(messages, kwargs):
        calls["n"] += 1
        if kill_after is not None and calls["n"] > kill_after:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        props = (kwargs.get("schema") or {}).get("properties", {})
        if "mistake" in props:
            return {"mistake": "lost a step", "op": "add", "target": 0,
                    "rule": "Write down every intermediate quantity before combining them."}
        if "instruction" in props:
            if instruction is not None:
                return instruction
            return {"diagnosis": "arithmetic slips", "instruction": INSTRUCTION}
        question = next((m["content"] for m in messages if m["role"] == "user"), "")
        if "action" not in props:
            return "I will work through the quantities one at a time."
        reference = answers.get(question)
        right = reference is not None and (
            (python_helps and "python" in props["action"]["enum"]) or _even(question))
        reply = {"action": "final_answer", "input": reference if right else "-1"}
        if "thought" in props:
            reply["thought"] = "done"
        return json.dumps(reply)

    return ScriptedModel(respond, name="search-fake", fingerprint="fake:search")
