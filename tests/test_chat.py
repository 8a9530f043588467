"""The chat session through its dispatch (the real-terminal test is tests/test_chat_tmux.py)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from agent.surfaces.chat import ChatSession, repl
from agent.errors import ModelUnavailable
from agent.surfaces.worker import MAX_QUESTION_CHARS
from memory.embeddings import HashEmbedder
from memory.store import Store
from tests.fakes import ScriptedModel
from tools.calculator import calculator


def chat_model(*, fail: BaseException | None = None, interrupt_stream: bool = False):
    """Thinks, calls the calculator on 17*24 when asked for it, answers, streams a reply."""

    def step(messages, kwargs):
        if fail is not None:
            return fail
        if kwargs.get("stream"):
            if interrupt_stream:
                return KeyboardInterrupt()
            result = messages[-2]["content"].split("Result: ")[-1]
            return f"It comes to {result}."
        observed = any("calculator" in str(m.get("content")) and m["role"] == "user" and "408" in str(m["content"])
                       for m in messages[2:])
        if kwargs.get("schema") is None:
            return "I will multiply." if not observed else "The product is 408."
        if "17*24" in messages[1]["content"] and not observed:
            return {"action": "calculator", "input": "17*24"}
        return {"action": "final_answer", "input": "408" if observed else "4"}

    return ScriptedModel(step)


@pytest.fixture
def session(settings):
    store = Store(settings, embedder=HashEmbedder())
    buf = io.StringIO()
    s = ChatSession(settings, store, chat_model(), [calculator],
                    console=Console(file=buf, width=120, color_system=None))
    s.buf = buf
    yield s
    store.close()


def output(session) -> str:
    return session.buf.getvalue()


def test_a_turn_shows_tools_streams_and_stores_a_pending_episode(session):
    turn = session.ask("What is 17*24?")
    text = output(session)
    assert "⚙ calculator(17*24)" in text and "→ 408" in text and "It comes to 408." in text
    ep = session.store.get_episode(turn.episode_id)
    assert (ep.verdict, ep.source, ep.final_answer) == ("pending", "chat", "408")
    task = session.store.get_task(ep.task_id)
    assert (task.origin, task.split, task.suite) == ("user", "train", "chat")
    assert ep.trajectory[-1] == {"kind": "reply", "text": "It comes to 408."}


def test_ratings_become_feedback(session):
    session.handle("What is 17*24?")
    session.handle("/good")
    first = session.store.get_episode(session.turns[-1].episode_id)
    assert (first.verdict, first.reward) == ("pass", 1.0)
    session.handle("and 2+2?")
    session.handle("/bad it should be 4, not 408")
    second = session.store.get_episode(session.turns[-1].episode_id)
    assert (second.verdict, second.reward, second.feedback) == ("fail", 0.0, "it should be 4, not 408")
    # the second question carried the conversation so far
    solver_prompt = [m for m, kw in session.model.calls if kw.get("schema") is None and not kw.get("stream")][-1]
    assert "Conversation so far" in solver_prompt[1]["content"]


def test_bad_input_gets_one_message_and_stores_nothing(session):
    session.handle("")
    session.handle("   ")
    session.handle("x" * 1_000_000)
    session.handle("/frobnicate now")
    session.handle("/good")
    text = output(session)
    assert f"the limit is {MAX_QUESTION_CHARS:,}" in text
    assert "unknown command /frobnicate" in text
    assert "nothing to rate yet" in text
    assert session.store.episodes() == [] and session.model.calls == []


def test_cancel_and_outage_store_nothing_and_keep_the_session(settings):
    store = Store(settings, embedder=HashEmbedder())
    for model, needle in ((chat_model(interrupt_stream=True), "cancelled"),
                          (chat_model(fail=ModelUnavailable("endpoint down")), "model is unavailable")):
        buf = io.StringIO()
        s = ChatSession(settings, store, model, [calculator], console=Console(file=buf, width=120))
        assert s.handle("What is 17*24?") is True
        assert needle in buf.getvalue()
        assert s.turns == []
    assert store.episodes() == []


def test_commands(session):
    session.store.add_experience("insight", "Multiply before adding when both appear.",
                                 source_task_ids=["arith/train/1"])
    for line in ("/policy", "/tools", "/memory multiply adding", "/memory", "/help", "/new"):
        assert session.handle(line) is True
    text = output(session)
    assert "version 1" in text and "system prompt" in text
    assert "calculator" in text and "on" in text
    assert "Multiply before adding" in text and "usage: /memory QUERY" in text
    assert "/bad [why]" in text and "new conversation" in text
    assert session.handle("/quit") is False


def test_repl_reads_until_quit_and_survives_ctrl_c_at_prompt(session):
    lines = iter(["What is 17*24?", KeyboardInterrupt(), "/good", "/quit", "never read"])

    def read():
        item = next(lines)
        if isinstance(item, BaseException):
            raise item
        return item

    assert repl(session, prompt=read) == 0
    assert next(lines) == "never read"
    assert session.store.episodes()[0].verdict == "pass"
    assert output(session).rstrip().endswith("bye")
