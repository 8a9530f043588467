"""Configuration mistakes end in one clear line naming the setting, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def run_cli(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env.update({"EVOLVE_HOME": str(tmp_path / "home"), "EVOLVE_CACHE_DIR": str(tmp_path / "cache")})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gguf(tmp_path):
    f = tmp_path / "w.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 64)
    return str(f)


CASES = [
    ("bad model path", ["model", "ask", "hi"], {"EVOLVE_MODEL__MODEL": "/nonexistent/model.gguf"},
     "EVOLVE_MODEL__MODEL"),
    ("hash mismatch", ["model", "ask", "hi"], {"EVOLVE_MODEL__MODEL": _gguf, "EVOLVE_MODEL__SHA256": "ab" * 32},
     "EVOLVE_MODEL__SHA256"),
    ("missing api key", ["model", "ask", "hi"], {"EVOLVE_MODEL__BACKEND": "openai", "EVOLVE_MODEL__MODEL": "gpt-4o-mini"},
     "EVOLVE_MODEL__API_KEY"),
    ("unreachable endpoint", ["model", "ask", "--no-stream", "hi"],
     {"EVOLVE_MODEL__BACKEND": "openai", "EVOLVE_MODEL__MODEL": "m", "EVOLVE_MODEL__MAX_RETRIES": "0",
      "EVOLVE_MODEL__BASE_URL": lambda tmp: f"http://127.0.0.1:{_closed_port()}/v1"},
     "EVOLVE_MODEL__BASE_URL"),
    ("bad backend name", ["model", "info"], {"EVOLVE_MODEL__BACKEND": "gpt"}, "EVOLVE_MODEL__BACKEND"),
    ("missing config file", ["model", "info"], {"EVOLVE_CONFIG": "/nonexistent/evolve.toml"}, "EVOLVE_CONFIG"),
]


@pytest.mark.parametrize("name, args, env, needle", CASES, ids=[c[0] for c in CASES])
def test_config_errors_are_one_line(name, args, env, needle, tmp_path):
    env = {k: (v(tmp_path) if callable(v) else v) for k, v in env.items()}
    proc = run_cli(args, env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_help_works(tmp_path):
    proc = run_cli(["--help"], {}, tmp_path)
    assert proc.returncode == 0 and "evolve" in proc.stdout
