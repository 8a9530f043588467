"""`evolve show`, `evolve rate` and the worker's answers in `evolve status`, through the CLI's
`run` (the console script's code path) against a home the worker filled with a fake model.
The worker's answers used to be visible only in its JSON log."""

from __future__ import annotations

import json

import pytest

from agent.cli.app import run
from agent.surfaces.worker import Worker, submit_question
from memory.embeddings import HashEmbedder
from memory.store import Store
from tests.fakes import ScriptedModel


def answering(answer):
    def step(messages, kwargs):
        question = next(m["content"] for m in messages if m["role"] == "user")
        if "crash" in question:
            return RuntimeError("the tool blew up")
        if kwargs.get("schema") is None:
            return f"Adding up. The answer is {answer}."
        return {"action": "final_answer", "input": answer}

    return ScriptedModel(step)


@pytest.fixture
def filled(settings):
    store = Store(settings, embedder=HashEmbedder())
    submit_question(store, "What is 2+2?")
    submit_question(store, "What is 3+3?", answer="6")
    submit_question(store, "please crash")
    Worker(settings, store, answering("6"), tools=[], exit_when_empty=True, wait=lambda s: None).run()
    return store


def test_status_lists_the_workers_answers_and_errors(filled, capsys):
    assert run(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    answers = {a["question"]: a for a in data["answers"]}
    assert answers["What is 3+3?"]["answer"] == "6" and answers["What is 3+3?"]["verdict"] == "pass"
    assert answers["What is 2+2?"]["verdict"] == "pending"
    assert "blew up" in answers["please crash"]["error"]
    assert run(["status"]) == 0
    text = capsys.readouterr().out
    assert "worker's last answers" in text and "What is 3+3?" in text and "blew up" in text


def test_show_prints_question_answer_verdict_and_trajectory(filled, capsys):
    assert run(["show", "2"]) == 0
    text = capsys.readouterr().out
    assert "question: What is 3+3?" in text and "answer: 6" in text and "verdict: pass" in text
    assert "thought" in text and "Adding up" in text
    assert run(["show", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trajectory"] and data["reference"] == "6"


def test_rate_turns_a_pending_answer_into_feedback(filled, capsys):
    assert run(["rate", "1", "bad", "--answer", "4"]) == 0
    ep = filled.get_episode(json.loads(_show(capsys, "1"))["episode"])
    assert (ep.verdict, ep.feedback) == ("fail", "rated bad by cli: the right answer is 4")
    assert filled.get_task(ep.task_id).answer == "4"
    assert run(["rate", f"e{ep.id}", "good"]) == 0
    assert filled.get_episode(ep.id).verdict == "pass"


@pytest.mark.parametrize("args, needle", [
    (["rate", "1", "maybe"], "good or bad"),
    (["rate", "99", "good"], "no queue item 99"),
    (["rate", "e999", "good"], "no episode 999"),
    (["show", "one"], "queue item number"),
])
def test_bad_references_are_one_line(filled, capsys, args, needle):
    assert run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def _show(capsys, ref):
    capsys.readouterr()
    assert run(["show", ref, "--json"]) == 0
    return capsys.readouterr().out
