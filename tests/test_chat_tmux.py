"""`evolve chat` in a real terminal: tmux types, the screen is read back with capture-pane.

Run as a script, this file is what the terminal runs: the chat REPL (prompt_toolkit, file
history, the real key bindings) over a ScriptedModel. Product code has no fake-model switch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.security_env import missing

ROOT = Path(__file__).resolve().parents[1]


def serve() -> int:
    sys.path.insert(0, str(ROOT))
    from rich.console import Console

    from agent.surfaces.chat import ChatSession, repl
    from agent.config import load_settings
    from memory.embeddings import HashEmbedder
    from memory.store import Store
    from tests.fakes import ScriptedModel
    from tools.calculator import calculator

    def step(messages, kwargs):
        # One solve per turn: a second (streamed) reply call would be a bug.
        assert not kwargs.get("stream"), "a chat turn makes one solve, no second reply call"
        question = messages[1]["content"] if len(messages) > 1 else ""
        asked = question.split("Now answer this: ")[-1]
        observed = any(m["role"] == "user" and "408" in str(m["content"]) for m in messages[2:])
        if kwargs.get("schema") is None:
            if "essay" in asked:
                for _ in range(600):
                    time.sleep(0.05)  # a slow model, so Ctrl-C lands mid-answer
            return "Multiplying." if not observed else "Got 408."
        if "double that" in asked:
            previous = question.split("Assistant: ")[-1].split("\n")[0]
            return {"action": "final_answer", "input": str(2 * int(previous))}
        if "line" in asked:
            return {"action": "final_answer", "input": f"{asked.count(chr(10)) + 1} lines"}
        if "17*24" in question and not observed:
            return {"action": "calculator", "input": "17*24"}
        return {"action": "final_answer", "input": "408" if observed else "42"}

    settings = load_settings()
    store = Store(settings, embedder=HashEmbedder())
    session = ChatSession(settings, store, ScriptedModel(step), [calculator], console=Console())
    return repl(session)


# ---------------------------------------------------------------- tests

TMUX = shutil.which("tmux")


@pytest.fixture(autouse=True)
def _require_tmux() -> None:
    # Fails in CI (CI=true); skips only with EVOLVE_TEST_ALLOW_SKIP=1 on a developer machine.
    if TMUX is None:
        missing("tmux is not installed (apt-get install tmux)")


class Term:
    def __init__(self, home: Path) -> None:
        self.sock = f"evolve-test-{uuid.uuid4().hex[:8]}"
        self.home = home

    def tmux(self, *args: str, check: bool = True) -> str:
        return subprocess.run([TMUX, "-L", self.sock, *args], capture_output=True, text=True, check=check).stdout

    def start(self) -> None:
        env = f"EVOLVE_HOME={self.home} PYTHONPATH={ROOT}"
        self.tmux("new-session", "-d", "-x", "120", "-y", "50", "-s", "chat",
                  f"env -u EVOLVE_CONFIG {env} {sys.executable} {__file__}; echo CHAT-EXITED $?; sleep 30")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "chat", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "chat", "-S", "-200")

    def wait_for(self, needle: str, timeout: float = 60.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if text.count(needle) > after:
                return text
            time.sleep(0.1)  # polling the terminal another process draws on
        raise AssertionError(f"{needle!r} did not appear; screen:\n{self.screen()}")

    def stop(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def term(settings):
    t = Term(settings.home)
    yield t
    t.stop()


def _answer_lines(screen: str) -> list[str]:
    return [line.strip() for line in screen.splitlines()]


def test_chat_in_a_real_terminal(term, settings):
    term.start()
    term.wait_for("/help for commands")
    term.wait_for("›")

    term.type("What is 17*24?")
    term.keys("Enter")
    screen = term.wait_for("/good or /bad to rate")
    assert "⚙ calculator(17*24)" in screen and "→ 408" in screen
    assert "408" in _answer_lines(screen)  # the answer line: exactly the stored answer
    assert '{"action"' not in screen

    term.type("/good")
    term.keys("Enter")
    term.wait_for("rated good")

    # A follow-up is answered with the conversation so far as its context.
    term.type("double that")
    term.keys("Enter")
    screen = term.wait_for("/good or /bad to rate", after=1)
    assert "816" in _answer_lines(screen)

    # Esc then Enter inserts a newline: one message of three lines.
    term.type("first line")
    term.keys("Escape", "Enter")
    term.type("second line")
    term.keys("Escape", "Enter")
    term.type("third line")
    term.keys("Enter")
    term.wait_for("3 lines")

    term.type("/frobnicate")
    term.keys("Enter")
    term.wait_for("unknown command /frobnicate")

    # Something is visible at once while the model works (a spinner with the elapsed time);
    # Ctrl-C mid-answer cancels it and the session goes on.
    started = time.monotonic()
    term.type("write an essay")
    term.keys("Enter")
    term.wait_for("working", timeout=5)
    seen_after = time.monotonic() - started
    term.keys("C-c")
    term.wait_for("cancelled")
    term.type("/bad wrong")
    term.keys("Enter")
    term.wait_for("rated bad")

    term.type("/quit")
    term.keys("Enter")
    term.wait_for("CHAT-EXITED 0")

    from memory.embeddings import HashEmbedder
    from memory.store import Store

    store = Store(settings, embedder=HashEmbedder())
    eps = store.episodes(source="chat")
    # the cancelled essay stored nothing; /bad rated the three-line message; shown = stored
    assert [e.verdict for e in eps] == ["pass", "pending", "fail"]
    assert [e.final_answer for e in eps] == ["408", "816", "3 lines"]
    assert seen_after < 5

    # /good reaches the next cycle's exemplars (confirmed by a verified probe), /bad never.
    from agent.config import Settings
    from agent.loop.graph import run_improve
    from tests.loop_fakes import answers_by_question, loop_model, train_questions

    cycle_settings = Settings(home=settings.home, loop={"suite": "arith", "train_per_cycle": 4, "dev_size": 6})
    model = loop_model(answers_by_question("arith"), train=train_questions() + ["What is 17*24?"])
    summary = run_improve(cycle_settings, cycles=1, model=model, store=store)
    assert summary["history"][0]["refine"]["feedback_confirmed"] == 1
    found = [e for e in store.retrieve("exemplar", "What is 17*25?", k=10) if e.meta.get("from") == "chat"]
    assert len(found) == 1 and "17*24" in found[0].content and "408" in found[0].content
    assert not [e for e in store.experiences(kind="exemplar") if "3 lines" in e.content]

    # History survives the session: a new one recalls the last line with Up.
    term.stop()
    term2 = Term(settings.home)
    try:
        term2.start()
        term2.wait_for("/help for commands")
        term2.wait_for("›")  # keys sent before the prompt owns the terminal would be echoed raw
        term2.keys("Up")
        term2.wait_for("› /quit")
        term2.keys("Up", "Up")
        term2.wait_for("› write an essay")
    finally:
        term2.stop()


if __name__ == "__main__":
    sys.exit(serve())
