"""In-weight update path: export, submit and poll an OpenAI-compatible fine-tuning job
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.config import ModelSettings
from agent.errors import ModelError
from agent.model.llm import FineTuning, OpenAIModel


class FineTuneServer:
    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.uploads: list[bytes] = []
        self.jobs: list[dict] = []
        self.polls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, payload, status=200):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.endswith("/files"):
                    outer.uploads.append(body)
                    self._json({"id": "file-1", "object": "file", "bytes": len(body), "created_at": 0,
                                "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"})
                elif self.path.endswith("/fine_tuning/jobs"):
                    outer.jobs.append(json.loads(body))
                    self._json(_job("queued"))
                else:
                    self._json({"error": {"message": "nope"}}, 404)

            def do_GET(self):
                if re.search(r"/fine_tuning/jobs/ftjob-1$", self.path):
                    outer.polls += 1
                    status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                    self._json(_job(status))
                else:
                    self._json({"error": {"message": "nope"}}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _job(status):
    job = {"id": "ftjob-1", "object": "fine_tuning.job", "created_at": 0, "model": "base-model",
           "organization_id": "org", "result_files": [], "seed": 0, "status": status, "training_file": "file-1",
           "hyperparameters": {"n_epochs": 1}, "fine_tuned_model": None, "error": None,
           "finished_at": None, "trained_tokens": None, "validation_file": None}
    if status == "succeeded":
        job["fine_tuned_model"] = "ft:base-model:evolve-p2"
    if status == "failed":
        job["error"] = {"code": "bad_data", "message": "training file has too few examples", "param": None}
    return job


@pytest.fixture
def model_and_server():
    servers = []

    def make(statuses):
        srv = FineTuneServer(statuses)
        servers.append(srv)
        cfg = ModelSettings(backend="openai", base_url=srv.url, model="base-model", max_retries=0)
        return OpenAIModel(cfg), srv

    yield make
    for srv in servers:
        srv.close()


def test_submit_and_poll_until_the_model_is_ready(model_and_server, tmp_path):
    model, srv = model_and_server(["queued", "running", "running", "succeeded"])
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "1+1"},
                                             {"role": "assistant", "content": "2"}]}) + "\n")
    sleeps = []
    jobs = FineTuning(model, sleep=sleeps.append, clock=lambda: 0.0)
    job_id = jobs.submit(data, base_model="base-model", suffix="evolve-p2-abcdef-very-long-suffix")
    assert job_id == "ftjob-1"
    assert b'"1+1"' in srv.uploads[0]
    assert srv.jobs[0]["model"] == "base-model" and len(srv.jobs[0]["suffix"]) <= 18
    assert jobs.wait(job_id, poll_s=5) == "ft:base-model:evolve-p2"
    assert srv.polls == 4 and sleeps == [5, 5, 5]


def test_a_failed_job_is_reported_with_its_reason(model_and_server):
    model, _ = model_and_server(["running", "failed"])
    with pytest.raises(ModelError, match="too few examples"):
        FineTuning(model, sleep=lambda s: None, clock=lambda: 0.0).wait("ftjob-1")


def test_a_job_past_its_deadline_stops_waiting(model_and_server):
    model, _ = model_and_server(["running"])
    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(ModelError, match="still running"):
        FineTuning(model, sleep=lambda s: None, clock=lambda: float(next(ticks))).wait("ftjob-1", timeout_s=250)
