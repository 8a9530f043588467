"""What reaches the terminal: escape sequences and control characters from pages, sandbox output
and model text are removed (issue 13 §4). A table of known sequences; add rows, never remove."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.security_env import missing
from tools.text import terminal_safe

ATTACKS = {
    "OSC 0 window title (BEL)": ("a\x1b]0;pwned title\x07b", "ab"),
    "OSC 0 window title (ST)": ("a\x1b]0;pwned\x1b\\b", "ab"),
    "OSC 52 clipboard write": ("x\x1b]52;c;cm0gLXJmIH4K\x07y", "xy"),
    "OSC 8 hyperlink": ("\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
    "unterminated OSC": ("ok\x1b]0;never ends", "ok"),
    "SGR colour": ("\x1b[31mred\x1b[0m", "red"),
    "CSI cursor up and erase line": ("done\x1b[1A\x1b[2Kfake", "donefake"),
    "CSI clear screen": ("\x1b[2J\x1b[Hhi", "hi"),
    "C1 CSI byte": ("a\x9b31mb", "ab"),
    "C1 OSC byte": ("a\x9d0;t\x9cb", "ab"),
    "DCS string": ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),
    "bare ESC and two-byte sequence": ("a\x1bcb\x1b(Bc", "abc"),
    "bare carriage return overwrite": ("rm -rf ~\rls", "rm -rf ~ls"),
    "backspace overwrite": ("safe\x08\x08\x08\x08evil", "safeevil"),
    "BEL, NUL, DEL, vertical tab, form feed": ("a\x07\x00\x7f\x0b\x0cb", "ab"),
}
KEPT = {
    "newlines, tabs and CRLF line ends": "line 1\n\tline 2\r\nline 3\n",
    "unicode text": "naïve café — 2² ≠ ∞ 日本語",
}


@pytest.mark.parametrize(("raw", "shown"), list(ATTACKS.values()), ids=list(ATTACKS))
def test_control_sequences_are_removed(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


@pytest.mark.parametrize("text", list(KEPT.values()), ids=list(KEPT))
def test_ordinary_text_is_kept(text: str) -> None:
    assert terminal_safe(text) == text


def test_evolve_tool_python_output_reaches_the_terminal_clean(tmp_path) -> None:
    from tools.sandbox import Sandbox, SandboxUnavailable

    try:
        Sandbox()
    except SandboxUnavailable as exc:
        missing(f"`evolve tool python` needs the sandbox: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env.update({"EVOLVE_HOME": str(tmp_path / "home"), "EVOLVE_CACHE_DIR": str(tmp_path / "cache")})
    code = "print('A\\x1b]52;c;cm0gLXJmIH4K\\x07B\\x1b[31mC\\rD')\n"
    done = subprocess.run([sys.executable, "-m", "agent.cli", "tool", "python", "-"], input=code, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ABCD" in done.stdout and "\x1b" not in done.stdout and "\r" not in done.stdout
