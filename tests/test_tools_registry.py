"""The default tool set and the helpers behind `evolve tool calc|python|fetch`."""

from __future__ import annotations

import io

import pytest

from agent.config import SandboxSettings, Settings
from tools import registry, sandbox as sandbox_mod
from tools.registry import default_tools, main_calc, main_python

HAVE_BWRAP = True
try:
    sandbox_mod.Sandbox(SandboxSettings())
except sandbox_mod.SandboxUnavailable:
    HAVE_BWRAP = False


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, sandbox=SandboxSettings(timeout_s=3))


def test_main_calc() -> None:
    assert main_calc("17*24+3") == (0, "411")
    status, text = main_calc("9**9**9")
    assert status == 1 and text.startswith("error: exponent too large")


def test_every_default_tool_has_a_complete_schema(settings: Settings) -> None:
    for t in default_tools(settings):
        schema = t.openai_schema()["function"]
        assert schema["description"] and schema["parameters"]["type"] == "object"
        for prop in schema["parameters"]["properties"].values():
            assert prop.get("description"), f"{t.name} has an undocumented argument"


@pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap cannot run here")
def test_python_tool(settings: Settings) -> None:
    python = {t.name: t for t in default_tools(settings)}["python"]
    good = python.invoke({"code": "print(sum(range(10)))"})
    assert good.ok and "exit code 0" in good.content and "stdout:\n45" in good.content
    bad = python.invoke({"code": "raise SystemExit('nope')"})
    assert not bad.ok and "exit code 1" in bad.content and "nope" in bad.content
    slow = python.invoke({"code": "while True: pass"})
    assert not slow.ok and "limit hit" in slow.content


def test_python_tool_without_isolation_is_an_observation(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_mod, "_bwrap_path", lambda: None)
    python = {t.name: t for t in default_tools(settings)}["python"]
    result = python.invoke({"code": "print(1)"})
    assert not result.ok and "apt-get install bubblewrap" in result.content
    assert main_python("print(1)", settings)[0] == 2


@pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap cannot run here")
def test_module_entry_point(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path))
    assert registry._main(["calc", "2^10"]) == 0
    assert capsys.readouterr().out == "1024\n"
    script = tmp_path / "s.py"
    script.write_text("print('from file')")
    assert registry._main(["python", str(script)]) == 0
    assert "from file" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("import sys; sys.exit(4)"))
    assert registry._main(["python", "-"]) == 1
    assert "exit code 4" in capsys.readouterr().out
    assert registry._main(["nope"]) == 2
