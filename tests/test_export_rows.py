"""The fine-tuning export in the turns the solver sends (agent/model/rows.py), with the held-out
lineage check of the in-weight path on top of the store's split firewall."""

from __future__ import annotations

import json

import pytest

from agent import prompts
from agent.model.adapters import row_renderer
from agent.policy import ensure_initial
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store
from memory.trajectory import Action, Observation, Prompt, Thought, Trajectory
from tools.registry import calculator


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder())
    yield st
    st.close()


def _act_trajectory(question):
    return Trajectory(steps=[
        Prompt(system="be brief", question=question), Thought(text="Two plus three."),
        Action(action="calculator", input="2+3", call_id="c1", arguments='{"expression": "2+3"}'),
        Observation(tool="calculator", content="5", call_id="c1"),
        Thought(text="It is 5. The answer is 5."), Action(action="final_answer", input="5", source="thought"),
    ]).to_stored()


def test_the_export_writes_the_solvers_turns_and_leaves_held_out_lineage_out(store, tmp_path):
    policy = ensure_initial(store)
    store.upsert_tasks([
        Task(id="arith/train/1", suite="arith", split="train", question="add two and three", answer="5"),
        Task(id="arith/dev/1", suite="arith", split="dev", question="add two and four", answer="6"),
        # A train row derived from a dev task: the store's split check passes it, the lineage check not.
        Task(id="arith/self/1", suite="arith", split="train", origin="self-proposed", question="add two and one",
             answer="3", parent_task_id="arith/dev/1"),
    ])
    for i, task_id in enumerate(["arith/train/1", "arith/self/1"]):
        store.add_episode(Episode(run_key=f"k{i}", task_id=task_id, split="train", policy_id=policy.id,
                                  model_fingerprint="f", verdict="pass", final_answer="5",
                                  trajectory=_act_trajectory("add two and three")))
    out = tmp_path / "ft.jsonl"
    assert store.export_training_data(out, render=row_renderer(store, [calculator])) == 1
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "add two and three"},
        {"role": "assistant", "content": "Two plus three."},
        {"role": "user", "content": prompts.act([calculator])},
        {"role": "assistant", "content": json.dumps({"action": "calculator", "input": "2+3"})},
        {"role": "user", "content": prompts.observation("calculator", "5", ok=True, untrusted=False)},
        {"role": "assistant", "content": "It is 5. The answer is 5."},
    ]
    # Without a renderer the export keeps the OpenAI tool-call view (both train-split rows).
    assert store.export_training_data(tmp_path / "plain.jsonl") == 1  # the two rows are one line
