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
        question = messages[1]["content"] if len(messages) > 1 else ""
        if kwargs.get("stream"):
            if "essay" in messages[-3]["content"]:
                return _slow_words(200)
            result = messages[-2]["content"].split("Result: ")[-1]
            lines = messages[-3]["content"].count("\n") + 1
            return f"It comes to {result} (your message had {lines} lines)."
        observed = any(m["role"] == "user" and "408" in str(m["content"]) for m in messages[2:])
        if kwargs.get("schema") is None:
            return "Multiplying." if not observed else "Got 408."
        if "17*24" in question and not observed:
            return {"action": "calculator", "input": "17*24"}
        return {"action": "final_answer", "input": "408" if observed else "42"}

    class SlowStream(ScriptedModel):
        def stream(self, messages, **kw):
            for piece in super().stream(messages, **kw):
                if piece.startswith("word"):
                    time.sleep(0.05)  # a slow model, so Ctrl-C lands mid-answer
                yield piece

    settings = load_settings()
    store = Store(settings, embedder=HashEmbedder())
    session = ChatSession(settings, store, SlowStream(step), [calculator], console=Console())
    return repl(session)


def _slow_words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


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


def test_chat_in_a_real_terminal(term, settings):
    term.start()
    term.wait_for("/help for commands")
    term.wait_for("›")

    term.type("What is 17*24?")
    term.keys("Enter")
    screen = term.wait_for("It comes to 408")
    assert "⚙ calculator(17*24)" in screen and "→ 408" in screen

    term.type("/good")
    term.keys("Enter")
    term.wait_for("rated good")

    # Esc then Enter inserts a newline: one message of three lines.
    term.type("first line")
    term.keys("Escape", "Enter")
    term.type("second line")
    term.keys("Escape", "Enter")
    term.type("third line")
    term.keys("Enter")
    term.wait_for("had 3 lines")

    term.type("/frobnicate")
    term.keys("Enter")
    term.wait_for("unknown command /frobnicate")

    # Ctrl-C mid-answer cancels it and the session goes on.
    term.type("write an essay")
    term.keys("Enter")
    term.wait_for("word3")
    term.keys("C-c")
    screen = term.wait_for("cancelled")
    assert "word199" not in screen
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
    # the cancelled essay stored nothing; /bad rated the three-line message
    assert [e.verdict for e in eps] == ["pass", "fail"]

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
