"""evolve as a real client of llama-cpp-python's OpenAI-compatible server, started by
`evolve serve` on a free loopback port with SmolLM2-135M; the same commands against the
embedded backend. Every check runs the real entry point in a subprocess.

SmolLM2 answers little correctly: these tests check that each command completes and reports
what it did, not accuracy.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp.server", reason="needs the serve extra: pip install -e '.[serve]'")

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration
READY = "Uvicorn running on"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env.update({"PYTHONPATH": str(REPO), "EVOLVE_HOME": str(home), "EVOLVE_MODEL__MODEL": "smollm2-135m",
                "EVOLVE_MODEL__N_CTX": "2048", "EVOLVE_MODEL__N_THREADS": "1",
                # SmolLM2 rambles to any cap it is given: a small one keeps these tests short.
                "EVOLVE_LOOP__MAX_TOKENS_PER_TASK": "400"})
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`evolve serve` in its own process; yields the base URL once uvicorn reports it is up."""
    home = tmp_path_factory.mktemp("serve-home")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", "--port", str(port)],
                            env=_base_env(home), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        for line in proc.stderr:  # blocks until the server logs; EOF means it died
            seen.append(line)
            if READY in line:
                break
        else:
            pytest.fail("evolve serve exited before listening:\n" + "".join(seen))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=["embedded", "server"])
def env(request, tmp_path):
    e = _base_env(tmp_path / "home")
    if request.param == "server":
        url = request.getfixturevalue("server")
        e.update({"EVOLVE_MODEL__BACKEND": "openai", "EVOLVE_MODEL__BASE_URL": url})
    e["BACKEND_UNDER_TEST"] = request.param
    return e


def evolve(env, *args, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"evolve {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_model_info_reports_the_structured_output_form(env):
    info = json.loads(evolve(env, "model", "info").stdout)
    if env["BACKEND_UNDER_TEST"] == "embedded":
        assert info["backend"] == "embedded" and info["model"] == "smollm2-135m"
        return
    # llama-cpp-python 0.3.36 refuses json_schema (HTTP 500) and enforces json_object's schema.
    assert info["structured_output"] == "json_object"
    assert info["probe"]["tried"]["json_schema"].startswith("refused (HTTP 500)")
    assert info["probe"]["tried"]["json_object"] == "enforced"
    assert info["tool_mode"] == "json"
    cached = json.loads((Path(env["EVOLVE_HOME"]) / "endpoints.json").read_text())
    assert cached[f"{env['EVOLVE_MODEL__BASE_URL']}#smollm2-135m"]["form"] == "json_object"


def test_demo_calls_the_calculator_and_answers(env):
    out = evolve(env, "demo", "What is 12 times 7?").stdout
    assert "call calculator(" in out or "answer" in out
    assert "model calls" in out


def test_one_improvement_cycle_on_arith(env):
    out = evolve(env, "improve", "--suite", "arith", "--cycles", "1", "--train", "2", "--dev", "3").stdout
    assert "stopped:" in out and "tokens" in out


def test_eval_on_a_few_items(env):
    out = evolve(env, "eval", "--suite", "arith", "--split", "dev", "--policy", "initial", "--limit", "3").stdout
    assert "(arith dev, n=3, seed=0)" in out


def test_streaming_chat_replies(env):
    out = evolve(env, "chat", stdin="What is 2 plus 3?\n/quit\n").stdout
    assert out.strip()


def test_streaming_ask_counts_tokens(env):
    proc = evolve(env, "model", "ask", "Say hello.")
    assert proc.stdout.strip()
    m = re.search(r"(\d+) prompt \+ (\d+) completion tokens", proc.stderr)
    assert m and int(m.group(2)) > 0, proc.stderr  # the server sends no usage when streaming


@pytest.mark.parametrize("form", ["tools", "prompt"])
def test_the_other_structured_forms_work_against_the_server(server, tmp_path, form):
    """Forced tool calls are enforced by llama-cpp-python's server too; the prompt form only
    asks, so with SmolLM2 it may fail validation, which must then be a parse error."""
    from agent.config import ModelSettings
    from agent.errors import OutputParseError
    from agent.model.llm import OpenAIModel

    model = OpenAIModel(ModelSettings(backend="openai", base_url=server, model="smollm2-135m",
                                      structured_output=form), cache_path=tmp_path / "endpoints.json")
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    try:
        result = model.complete([{"role": "user", "content": "What is 2 plus 2?"}], schema=schema, max_tokens=32)
    except OutputParseError:
        assert form == "prompt"
        return
    assert isinstance(result.parsed["answer"], int)
