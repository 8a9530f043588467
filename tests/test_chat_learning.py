"""Every surface feeds learning: a chat turn rated /good becomes an exemplar that the next
cycle confirms and a similar question then retrieves; a /bad or unrated one never does; a
rating alone stays quarantined when its probe fails (it used to be dropped: refine read only
the run's own acquire episodes)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from agent.config import Settings
from agent.loop.graph import run_improve
from agent.surfaces.chat import ChatSession
from agent.surfaces.worker import rate_episode
from memory.embeddings import HashEmbedder
from memory.store import Store
from tests.fakes import ScriptedModel
from tests.loop_fakes import answers_by_question, loop_model, train_questions

GOOD_Q = "A baker bakes 7 trays with 12 rolls on each tray. How many rolls are there?"
BAD_Q = "Rosa has 10 stickers and gives away 4. How many stickers does Rosa have left?"
UNRATED_Q = "A farm has 5 pens with 6 goats in each pen. How many goats are there?"
CHAT_ANSWERS = {GOOD_Q: "84", BAD_Q: "14", UNRATED_Q: "30"}


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def chat_model():
    def step(messages, kwargs):
        question = next(m["content"] for m in messages if m["role"] == "user")
        said = next((a for q, a in CHAT_ANSWERS.items() if q in question), "0")
        if kwargs.get("schema") is None:
            return f"Multiply, then the answer is {said}."
        return {"action": "final_answer", "input": said}

    return ScriptedModel(step, fingerprint="fake:chat")


def make(tmp_path):
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 6, "dev_size": 8,
                                                        "exemplars_k": 2, "patience": 0})
    settings.ensure_dirs()
    return settings, Store(settings, embedder=HashEmbedder(64))


def chat(settings, store):
    session = ChatSession(settings, store, chat_model(), [], console=Console(file=io.StringIO(), width=120))
    for q, rating in ((GOOD_Q, "/good"), (BAD_Q, "/bad it is 6"), (UNRATED_Q, None)):
        session.handle("/new")
        session.handle(q)
        if rating:
            session.handle(rating)
    return session


def chat_exemplars(store, query):
    return [e for e in store.retrieve("exemplar", query, k=10) if e.meta.get("from") == "chat"]


def test_a_good_rating_is_retrieved_after_one_cycle_and_a_bad_one_never(tmp_path, answers):
    settings, store = make(tmp_path)
    chat(settings, store)
    similar = "A baker bakes 8 trays with 12 rolls on each tray. How many rolls are there?"
    assert chat_exemplars(store, similar) == []  # a rating alone is not memory yet
    # The fake is right on any task once a worked example it knows is shown: the rated chat
    # answer is declared one of them, so its probe can pass (the verifier still decides).
    model = loop_model(answers, train=train_questions() + [GOOD_Q])
    summary = run_improve(settings, cycles=1, model=model, store=store)
    refine = summary["history"][0]["refine"]
    assert refine["feedback_exemplar"] == 1 and refine["feedback_confirmed"] == 1 and refine["feedback_bad"] == 1
    found = chat_exemplars(store, similar)
    assert len(found) == 1 and GOOD_Q in found[0].content and "84" in found[0].content
    assert found[0].meta["rated_by"] == "chat" and found[0].trust == "verified"
    everything = store.experiences(kind="exemplar")
    assert not [e for e in everything if BAD_Q in e.content or UNRATED_Q in e.content]
    # Provenance: the exemplar points at the rated chat episode and its train task.
    ep = store.get_episode(found[0].source_episode_ids[0])
    assert (ep.source, ep.split, ep.verdict) == ("chat", "train", "pass")


def test_an_unconfirmed_rating_stays_quarantined(tmp_path, answers):
    settings, store = make(tmp_path)
    chat(settings, store)

    def always_wrong(messages, kwargs):
        if (kwargs.get("schema") or {}).get("properties", {}).get("mistake"):
            return {"mistake": "m", "op": "add", "target": 0, "rule": "Check every step of the work twice."}
        if kwargs.get("schema") is None:
            return "The answer is -1."
        return {"action": "final_answer", "input": "-1"}

    summary = run_improve(settings, cycles=1, model=ScriptedModel(always_wrong), store=store)
    assert summary["history"][0]["refine"]["feedback_confirmed"] == 0
    held = [e for e in store.experiences(kind="exemplar") if e.meta.get("from") == "chat"]
    assert len(held) == 1 and held[0].trust == "unverified"
    assert chat_exemplars(store, GOOD_Q) == []


def test_held_out_episodes_cannot_be_rated(tmp_path):
    from agent.errors import InputError
    from memory.models import Episode, Task

    settings, store = make(tmp_path)
    store.upsert_tasks([Task(id="arith/dev/x", suite="arith", split="dev", question="q", answer="1")])
    ep = store.add_episode(Episode(run_key="k", task_id="arith/dev/x", split="dev", policy_id="p",
                                   model_fingerprint="f", source="eval"))
    with pytest.raises(InputError, match="only train"):
        rate_episode(store, ep.id, True)
