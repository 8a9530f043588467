"""Acquisition with fine-tuning on: extra sampled attempts per train task (distinct verified
solutions), STaR rationalisation of unsolved train tasks, both marked, train tasks only."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.loop import acquire as acquire_phase
from agent.loop.runtime import make_runtime
from agent.model.adapters import RATIONALISED_SOURCE, SAMPLED_SOURCE, verified_examples
from agent.policy import ensure_initial
from memory.embeddings import HashEmbedder
from memory.models import Task
from memory.store import Store
from tests.fakes import ScriptedModel
from tests.loop_fakes import _even, answers_by_question


def _model(answers):
    """Decides from the request: which task (the question), greedy or sampled (temperature),
    and whether the request carries the reference (a rationalisation request). Right on tasks
    with an even hash; a sampled reply is worded differently from the greedy one, and two
    sampled replies alike, so deduplication has a duplicate to drop."""

    def respond(messages, kwargs):
        asked = next(m["content"] for m in messages if m["role"] == "user")
        question = next((q for q in answers if asked == q or asked.startswith(q + "\n\n")), asked)
        reference = answers.get(question, "")
        hinted = asked != question and reference and reference in asked[len(question):]
        right = hinted or _even(question)
        answer = reference if right else "0"
        if (kwargs.get("temperature") or 0) > 0:
            return f"Working it through once more gives {answer}. The answer is {answer}."
        return f"Step by step it comes to {answer}. The answer is {answer}."

    return ScriptedModel(respond)


def _runtime(tmp_path, **loop):
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 8, **loop})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    model = _model(answers_by_question("arith"))
    return make_runtime(settings, suite="arith", model=model, store=store), model


def test_sampled_attempts_and_rationalisations_are_gathered_and_marked(tmp_path):
    rt, model = _runtime(tmp_path, finetune="local", finetune_samples=2, finetune_temperature=0.7)
    policy = ensure_initial(rt.store)
    out = acquire_phase.acquire(rt, run_id="r", cycle=1, policy=policy)
    tasks = {e.task_id for e in rt.store.episodes(source="acquire")}
    assert out["total"] == 8 and out["sampled"] == 16
    sampled = rt.store.episodes(source=SAMPLED_SOURCE)
    assert len(sampled) == 16 and {e.task_id for e in sampled} == tasks
    assert all(e.split == "train" and e.policy_id == policy.id for e in sampled)
    sampled_temps = [kw.get("temperature") for msgs, kw in model.calls if kw.get("temperature")]
    assert sampled_temps and set(sampled_temps) == {0.7}
    unsolved = {e.task_id for e in rt.store.episodes(source="acquire", verdict="fail")}
    assert unsolved  # the fake fails on odd-hash tasks, so there is something to rationalise
    rationalised = rt.store.episodes(source=RATIONALISED_SOURCE)
    assert {e.task_id for e in rationalised} == unsolved and out["rationalised"] == len(unsolved)
    assert all(e.verdict == "pass" and e.split == "train" for e in rationalised)

    examples = verified_examples(rt.store, rt.tools)
    by_task = {}
    for e in examples:
        by_task.setdefault(e.task_id, []).append(e.source)
    # Solved tasks: the greedy solution and one sampled (the two sampled replies are one text);
    # unsolved ones: the rationalisation alone.
    assert by_task == {t: (["rationalised"] if t in unsolved else ["verified", "sampled"]) for t in tasks}
    assert all(e.task_id.startswith("arith/train/") for e in examples)
    # The reference was a hint only: no row says it was given.
    assert not any("hint" in m["content"].lower() for e in examples for m in e.messages)

    again = acquire_phase.acquire(rt, run_id="r", cycle=1, policy=policy)  # a resumed cycle
    assert len(rt.store.episodes(source=SAMPLED_SOURCE)) == 16 and again["rationalised"] == len(unsolved)


def test_without_fine_tuning_acquisition_is_the_greedy_attempts_alone(tmp_path):
    rt, model = _runtime(tmp_path)
    out = acquire_phase.acquire(rt, run_id="r", cycle=1, policy=ensure_initial(rt.store))
    assert out["total"] == 8 and "sampled" not in out
    assert rt.store.episodes(source=SAMPLED_SOURCE) == [] and rt.store.episodes(source=RATIONALISED_SOURCE) == []
    assert len(model.calls) == 8


@pytest.mark.parametrize("parent", ["arith/dev/1", "arith/test/1"])
def test_a_train_row_derived_from_a_held_out_task_is_neither_sampled_nor_rationalised(tmp_path, monkeypatch, parent):
    rt, model = _runtime(tmp_path, finetune="local", finetune_samples=2)
    held = Task(id=parent, suite="arith", split=parent.split("/")[1], question="What is 3 + 4?", answer="7")
    child = Task(id="arith/self/1", suite="arith", split="train", origin="self-proposed",
                 question="What is 3 + 5?", answer="1", parent_task_id=parent)  # the fake gets it wrong
    rt.store.upsert_tasks([held, child])
    monkeypatch.setattr(acquire_phase, "pick_train_tasks", lambda rt, run_id, cycle, n: [child])
    out = acquire_phase.acquire(rt, run_id="r", cycle=1, policy=ensure_initial(rt.store))
    assert out["sampled"] == 0 and out["rationalised"] == 0
    # The greedy attempt only: no sampled request, none carrying the reference answer.
    assert not [kw for msgs, kw in model.calls if (kw.get("temperature") or 0) > 0]
    assert not [msgs for msgs, kw in model.calls if any("answer is 1" in m["content"] for m in msgs)]
    assert verified_examples(rt.store, rt.tools) == []
