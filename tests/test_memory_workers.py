"""Many workers on one store (PostgreSQL + a Chroma server), each a real `evolve run` process
talking to one OpenAI-compatible endpoint on loopback; and two improvers on two homes.

The endpoint is a fake (an HTTP server in this test answering sums); everything else is the
product. Needs the servers of tests/services.py (skipped without them, failing under CI=true).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # real servers and processes (tests/services.py)

ROOT = Path(__file__).resolve().parents[1]
# The size; EVOLVE_TEST_WORKER_TASKS makes a quicker local run.
N_TASKS = int(os.environ.get("EVOLVE_TEST_WORKER_TASKS", "300"))
N_WORKERS = 3
LEASE_S = 5
SUM = re.compile(r"What is (\d+) \+ (\d+)\?")


class SumEndpoint:
    """Chat completions that answer "What is a + b?" correctly, from the request alone.

    Each worker sends its own API key, so the endpoint can hold one worker's next request
    open (`hold`): the test then kills that worker in the middle of a task, never between."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.hold_key: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": "sum-model", "object": "model", "owned_by": "test"}]})

            def do_POST(self):
                key = self.headers.get("authorization", "").removeprefix("Bearer ")
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                outer.calls[key] = outer.calls.get(key, 0) + 1
                if key == outer.hold_key:
                    outer.held.set()
                    outer.release.wait(60)
                    return
                text = " ".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")
                found = SUM.findall(text)
                answer = str(int(found[-1][0]) + int(found[-1][1])) if found else "0"
                content = (json.dumps({"thought": "add", "action": "final_answer", "input": answer})
                           if body.get("response_format") else f"Adding the two numbers. The answer is {answer}.")
                self._send({"id": "c", "object": "chat.completion", "created": 0, "model": "sum-model",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _env(home: Path, pg_url: str, chroma_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLVE_", "OPENAI_"))}
    env.update(EVOLVE_HOME=str(home), EVOLVE_DATABASE_URL=pg_url, EVOLVE_MEMORY__CHROMA_URL=chroma_url,
               PYTHONPATH=str(ROOT), **extra)
    return env


def _evolve(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _seed(tmp_path: Path, pg_url: str, chroma_url: str):
    """Tasks, a queue, and an incumbent that retrieves exemplars (so every task reads the
    Chroma server and records usage), made with the embedder the workers use."""
    from agent.config import Settings
    from agent.policy import INCUMBENT, PolicySpec, create_candidate, ensure_initial
    from memory.models import Task
    from memory.store import Store

    settings = Settings(home=tmp_path / "seed", database_url=pg_url, memory={"chroma_url": chroma_url})
    settings.ensure_dirs()
    store = Store(settings)
    base = ensure_initial(store)
    for i in range(6):
        store.add_experience("exemplar", f"Question: What is {i} + {i}?\nSolution: add.\nThe answer is {2 * i}.",
                             key=f"What is {i} + {i}?", source_task_ids=[f"seed/train/{i}"])
    better = create_candidate(store, base, PolicySpec.model_validate(base.spec).model_copy(update={"exemplars_k": 2}))
    store.set_pointer(INCUMBENT, better.id)
    tasks = [Task(id=f"sums/train/{i}", suite="sums", split="train", origin="user", question=f"What is {i} + {i * 7}?",
                  answer=str(i + i * 7)) for i in range(N_TASKS)]
    store.enqueue(tasks)
    return settings, store


def test_three_workers_one_killed_every_task_done_once(tmp_path, pg_url, chroma_url):
    settings, store = _seed(tmp_path, pg_url, chroma_url)
    with SumEndpoint() as endpoint:
        procs = []
        for w in range(N_WORKERS):
            env = _env(tmp_path / f"worker{w}", pg_url, chroma_url, EVOLVE_MODEL__BACKEND="openai",
                       EVOLVE_MODEL__BASE_URL=endpoint.url, EVOLVE_MODEL__MODEL="sum-model",
                       EVOLVE_MODEL__API_KEY=f"w{w}", EVOLVE_MEMORY__QUEUE_LEASE_S=str(LEASE_S))
            procs.append(_evolve(["run", "--drain", "--quiet", "--poll", "0.2"], env))
        # Generous: on an idle machine the run takes well under a minute; on a loaded one (the
        # 2-core box this was written on, load 10-15) several minutes.
        deadline = time.monotonic() + 480
        # Once the run is well under way, hold worker 0's next model call and kill it there.
        while store.queue_counts()["done"] < N_TASKS // 5:
            assert time.monotonic() < deadline, f"workers made no progress: {store.queue_counts()}"
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.poll() is not None]
            time.sleep(0.2)  # polling other processes' progress
        endpoint.hold_key = "w0"
        assert endpoint.held.wait(60), "worker 0 sent no further request"
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=30)
        endpoint.release.set()
        for p in procs[1:]:
            assert p.wait(timeout=max(5.0, deadline - time.monotonic())) == 0, p.stderr.read()

    assert store.queue_counts() == {"queued": 0, "running": 0, "done": N_TASKS, "error": 0}
    items = store.queue_items()
    episodes = store.episodes(source="worker")
    # Every task done exactly once: one episode per item, none lost, none doubled.
    assert len(episodes) == N_TASKS
    assert sorted(e.run_key for e in episodes) == sorted(f"worker/q{i.id}" for i in items)
    assert len({i.episode_id for i in items}) == N_TASKS
    assert all(e.verdict == "pass" for e in episodes), [e.final_answer for e in episodes if e.verdict != "pass"][:5]
    # The killed worker's item was taken over after its lease, by a live worker.
    reclaimed = [i for i in items if i.claims > 1]
    assert reclaimed and all(i.worker != f"{os.uname().nodename}:{(tmp_path / 'worker0').resolve()}" for i in reclaimed)
    assert {i.worker for i in items} >= {f"{os.uname().nodename}:{(tmp_path / f'worker{w}').resolve()}"
                                          for w in range(1, N_WORKERS)}
    # Every episode used the server's index; usage counts add up; the index matches the tables.
    shown = sum(len(e.shown_experience_ids) for e in episodes)
    assert shown == 2 * N_TASKS
    assert sum(r.uses for r in store.experiences(kind="exemplar")) == shown
    check = store.check_index()
    assert check["repaired"] == {} and not check["rebuilt"] and check["embedded"] == 0
    assert store.index.counts() == {"exp-exemplar-train-verified": 6}
    store.close()


HOLDER = """
import sys
from agent.config import load_settings
from agent.surfaces.schedule import improvement_lock
with improvement_lock(load_settings(), what="holder"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_two_improvers_on_two_homes_one_runs_one_skips(tmp_path, pg_url, chroma_url):
    holder_env = _env(tmp_path / "machine-a", pg_url, chroma_url)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=holder_env, cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        # The real `evolve improve` on another home: its file lock is free, the database's is not.
        other = _evolve(["improve", "--suite", "arith", "--cycles", "1"], _env(tmp_path / "machine-b", pg_url, chroma_url))
        assert other.wait(timeout=120) == 3
        assert "database lock" in other.stderr.read()
        # A holder that dies (SIGKILL, no cleanup) leaves no stale lock: the server drops it.
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        again = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(tmp_path / "machine-c", pg_url, chroma_url),
                                 cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        assert again.stdout.readline().strip() == "held", again.stderr.read()
        again.communicate("\n", timeout=60)
        assert again.returncode == 0
    finally:
        if holder.poll() is None:
            holder.kill()
