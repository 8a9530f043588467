"""An episode the real embedded solver produced (SmolLM2-135M), through the fine-tuning export:
its reasoning, every tool call and every tool result must arrive as chat messages."""

from __future__ import annotations

import json

import pytest

from agent.attempt import Solvers, run_attempt
from agent.config import Settings
from agent.model.llm import make_model
from agent.policy import PolicySpec, ensure_initial
from agent.surfaces.worker import rate_episode, user_task
from memory.embeddings import HashEmbedder
from memory.store import Store
from memory.trajectory import Action, Observation, Thought, Trajectory
from tools.calculator import calculator

pytestmark = pytest.mark.integration

QUESTION = "Use the calculator to compute 123 * 457. What is 123 * 457?"


def test_export_of_a_real_solver_episode_holds_reasoning_tool_calls_and_results(tmp_path):
    settings = Settings(home=tmp_path / "home", model={"model": "smollm2-135m", "n_threads": 2})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(32))
    # One JSON turn per step (no free-text turn that could state the answer and stop): the act
    # schema offers the calculator at every step but the last.
    policy = ensure_initial(store, PolicySpec(think_first=False, tools=["calculator"], max_steps=3))
    task = user_task(QUESTION)
    store.upsert_tasks([task])
    solver = Solvers(settings, make_model(settings), [calculator]).for_policy(policy)
    episode = run_attempt(store=store, solver=solver, task=task, policy=policy, run_key="real/1", source="worker")
    assert episode.verdict == "pending" and episode.prompt_tokens > 0
    rate_episode(store, episode.id, good=True)  # a person's rating makes it a training row
    out = tmp_path / "train.jsonl"
    assert store.export_training_data(out) == 1
    messages = json.loads(out.read_text())["messages"]

    steps = Trajectory.from_stored(store.get_episode(episode.id).trajectory)
    # The reasoning: free-text turns, and the "thought" field of each JSON turn.
    reasoning = [s.text.strip() for s in steps.of(Thought)] + [a.thought.strip() for a in steps.of(Action)]
    reasoning = [t for t in reasoning if t]
    calls = [s for s in steps.of(Action) if s.action != "final_answer"]
    results = steps.of(Observation)
    assert reasoning and calls and results, f"the solver made no tool call: {steps.to_stored()}"
    said = "\n".join(m["content"] or "" for m in messages if m["role"] == "assistant")
    assert all(t in said for t in reasoning)
    sent = [c for m in messages for c in m.get("tool_calls", [])]
    assert [(c["id"], c["function"]["name"]) for c in sent][:len(calls)] == [(a.call_id, a.action) for a in calls]
    tool_msgs = [m for m in messages if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs][:len(results)] == \
        [(o.call_id, o.content) for o in results]
    assert messages[0]["role"] == "system" and messages[1] == {"role": "user", "content": QUESTION}
    assert messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls")
    store.close()
