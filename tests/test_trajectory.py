"""The typed trajectory: its chat-message view, its text views, and the migration of old rows."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from memory.embeddings import HashEmbedder
from memory.migrations import LATEST
from memory.models import Episode, Task
from memory.store import Store
from memory.trajectory import (Action, Observation, ParseError, Prompt, Reply, Settled, Thought, Trajectory,
                               upgrade_legacy)

# What the solver wrote before the typed trajectory (dicts keyed by "type").
OLD_ROW = [
    {"type": "prompt", "system": "You solve problems.", "question": "What is 6*7+1?"},
    {"type": "thought", "text": "Multiply first."},
    {"type": "action", "thought": "", "action": "calculator", "input": "6*7"},
    {"type": "observation", "tool": "calculator", "ok": True, "content": "42", "untrusted": False, "seconds": 0.01},
    {"type": "parse_error", "error": "expected a JSON object", "raw": "oops"},
    {"type": "thought", "text": "Now add one."},
    {"type": "action", "thought": "", "action": "final_answer", "input": "42+1"},
    {"type": "settled", "expression": "42+1", "value": "43"},
]


def solved() -> Trajectory:
    return Trajectory(steps=[
        Prompt(system="sys", question="What is 6*7?"), Thought(text="I will multiply."),
        Action(action="calculator", input="6*7", call_id="call_2", arguments='{"expression": "6*7"}'),
        Observation(tool="calculator", content="42", call_id="call_2"),
        ParseError(error="bad", raw="{"), Thought(text="So it is 42."),
        Action(action="final_answer", input="42")])


def test_messages_carry_reasoning_tool_calls_and_results():
    msgs = solved().to_messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    call = msgs[2]["tool_calls"][0]
    assert msgs[2]["content"] == "I will multiply."
    assert call == {"id": "call_2", "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_2", "content": "42"}
    assert msgs[4] == {"role": "assistant", "content": "So it is 42.\n\n42"}
    # the malformed reply is shown only on request
    with_errors = solved().to_messages(with_errors=True)
    assert any(m["role"] == "assistant" and m["content"] == "{" for m in with_errors)


def test_settled_answer_is_a_calculator_call_and_a_reply_replaces_the_answer():
    t = Trajectory.from_stored(OLD_ROW)
    msgs = t.to_messages()
    assert msgs[-3]["tool_calls"][0]["function"] == {"name": "calculator", "arguments": '{"expression": "42+1"}'}
    assert msgs[-2] == {"role": "tool", "tool_call_id": msgs[-3]["tool_calls"][0]["id"], "content": "43"}
    assert msgs[-1] == {"role": "assistant", "content": "43"}
    t.append(Reply(text="It is 43."))
    assert t.to_messages()[-1] == {"role": "assistant", "content": "It is 43."}


def test_an_answer_stated_in_the_reasoning_is_not_repeated():
    t = Trajectory(steps=[Prompt(question="q"), Thought(text="The answer is 7."),
                          Action(action="final_answer", input="7", source="thought")])
    assert t.to_messages()[-1] == {"role": "assistant", "content": "The answer is 7."}


def test_text_views():
    t = solved()
    assert t.exemplar_text("What is 6*7?", "42") == (
        "Question: What is 6*7?\nSolution: I will multiply.\n[calculator] 6*7\n[result] 42\nSo it is 42.\n"
        "The answer is 42.")
    assert t.attempt_text().endswith("[final_answer] 42") and len(t.attempt_text(limit=10)) == 10
    assert t.work_summary() == ["called calculator(6*7)", "got 42"]


def test_stored_form_round_trips_and_rejects_unknown_kinds():
    t = solved()
    assert Trajectory.from_stored(json.loads(json.dumps(t.to_stored()))) == t
    with pytest.raises(ValidationError):
        Trajectory.from_stored([{"kind": "sudo", "text": "x"}])


def test_legacy_rows_become_typed_steps():
    steps = upgrade_legacy(OLD_ROW)
    assert [s["kind"] for s in steps] == [s["type"] for s in OLD_ROW]
    assert steps[2]["call_id"] == steps[3]["call_id"] != ""
    concluded = upgrade_legacy([{"type": "action", "from": "thought", "thought": "", "action": "final_answer",
                                 "input": "3"}])
    assert concluded[0]["source"] == "thought" and "from" not in concluded[0]


def test_migration_converts_a_stored_old_format_episode(settings):
    store = Store(settings, embedder=HashEmbedder(16))
    store.upsert_tasks([Task(id="arith/train/9", suite="arith", split="train", question="What is 6*7+1?",
                             answer="43")])
    store.add_episode(Episode(run_key="old/1", task_id="arith/train/9", split="train", policy_id="p",
                              model_fingerprint="f", trajectory=OLD_ROW, final_answer="43", verdict="pass"))
    with store.engine.begin() as conn:  # back to the schema before this migration
        conn.exec_driver_sql("DELETE FROM evolve_schema_version WHERE version = 3")
    store.close()
    reopened = Store(settings, embedder=HashEmbedder(16))
    assert reopened.stats()["schema_version"] == LATEST
    row = reopened.episode_by_key("old/1").trajectory
    assert all("kind" in s and "type" not in s for s in row)
    t = Trajectory.from_stored(row)
    assert isinstance(t.steps[-1], Settled) and t.prompt.question == "What is 6*7+1?"
    reopened.close()
