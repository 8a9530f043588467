"""The worker as a real process, sent SIGTERM and SIGKILL.

Run as a script, this file is the launcher the tests start: a worker on $EVOLVE_HOME whose
model is a ScriptedModel taking `--delay` seconds per thought (a slow model, so a signal
lands mid-task). Product code has no switch for a fake model; only this file builds one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def serve(argv: list[str]) -> int:
    import argparse

    sys.path.insert(0, str(ROOT))
    from agent.config import load_settings
    from agent.surfaces.worker import Worker
    from memory.embeddings import HashEmbedder
    from memory.store import Store
    from tests.fakes import ScriptedModel

    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--drain", action="store_true")
    args = p.parse_args(argv)

    def step(messages, kwargs):
        if kwargs.get("schema") is None:
            time.sleep(args.delay)  # the model is slow; this is what is being simulated
            return "Thinking. The answer is 7."
        return {"thought": "", "action": "final_answer", "input": "7"}

    settings = load_settings()
    store = Store(settings, embedder=HashEmbedder())
    worker = Worker(settings, store, ScriptedModel(step), tools=[], poll_s=0.2, exit_when_empty=args.drain)
    return worker.run()


# ---------------------------------------------------------------- tests


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env["EVOLVE_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _start(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], env=_env(home), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(home: Path) -> list[dict]:
    path = home / "logs" / "worker.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.05)  # polling a log file another process writes
    raise AssertionError(f"timed out waiting for {what}")


def _fill(settings, n: int):
    from agent.surfaces.worker import submit_question
    from memory.embeddings import HashEmbedder
    from memory.store import Store

    store = Store(settings, embedder=HashEmbedder())
    for i in range(n):
        submit_question(store, f"question {i}")
    return store


def test_sigterm_finishes_the_current_task_and_exits_zero(settings):
    store = _fill(settings, 5)
    proc = _start(settings.home, "--delay", "1.0")
    started = _wait_for(lambda: [e for e in _events(settings.home) if e["event"] == "task_start"], proc, "a task")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    from agent.surfaces.worker import queue_counts, read_heartbeat

    ev = _events(settings.home)
    kinds = [e["event"] for e in ev]
    assert "stop_requested" in kinds and kinds[-1] == "worker_stop"
    done_items = {e["item"] for e in ev if e["event"] == "task_done"}
    assert started[0]["item"] in done_items  # the task in hand was finished, not dropped
    counts = queue_counts(store)
    assert counts["running"] == 0 and counts["done"] == len(done_items) and counts["queued"] == 5 - len(done_items)
    assert read_heartbeat(settings)["state"] == "stopped"


def test_sigkill_then_restart_resumes_without_duplicates(settings):
    store = _fill(settings, 4)
    proc = _start(settings.home, "--delay", "1.0")
    _wait_for(lambda: any(e["event"] == "task_start" for e in _events(settings.home)), proc, "a task")
    proc.kill()
    proc.wait(timeout=30)
    from agent.surfaces.worker import queue_counts

    assert queue_counts(store)["running"] == 1  # killed mid-task: the item is still in hand
    proc2 = _start(settings.home, "--drain")
    assert proc2.wait(timeout=120) == 0, proc2.stderr.read()
    assert queue_counts(store) == {"queued": 0, "running": 0, "done": 4, "error": 0}
    episodes = store.episodes(source="worker")
    assert len(episodes) == 4 and len({e.run_key for e in episodes}) == 4
    resumed = [e for e in _events(settings.home) if e["event"] == "worker_start"][-1]["resumed"]
    assert len(resumed) == 1


def test_cli_run_and_status_through_the_console_script(settings):
    """`evolve submit` then `evolve status --json` as a new user would type them."""
    script = (
        "import sys; from agent.cli.app import run; "
        "sys.exit(run(sys.argv[1:]))"
    )
    env = _env(settings.home)
    r = subprocess.run([sys.executable, "-c", script, "submit", "What is 6*7?"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "queued" in r.stdout
    r = subprocess.run([sys.executable, "-c", script, "submit", ""], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-c", script, "status", "--json"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["queue"]["queued"] == 1


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
