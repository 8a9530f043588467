"""Structured output that adapts to the endpoint, and refusals that are not retried.

The fake endpoints here decide from the request (its response_format, tools and schema), the
way real servers do, never from prompt wording.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.config import ModelSettings
from agent.errors import ModelUnavailable, OutputParseError
from agent.model.endpoint import RequestRejected, is_refusal, refused_field
from agent.config import ConfigError
from agent.model.llm import FineTuning, OpenAIModel
from agent.model.structured import PROBE_VALUE

REPO = Path(__file__).resolve().parents[1]

# What llama-cpp-python 0.3.36's server answered to response_format.type=json_schema (seen here).
LLAMA_CPP_500 = {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
               "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"app.py\", line 376",
    "type": "internal_server_error", "param": None, "code": None}}


def _completion(content, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}


def _satisfy(schema):
    """A value matching the schemas these tests use (enum constants, objects, strings)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _satisfy(schema["anyOf"][0])
    if schema.get("type") == "object":
        return {k: _satisfy(v) for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", schema.get("properties", {}))}
    if schema.get("type") == "integer":
        return 4
    return "x"


class Endpoint:
    """A local OpenAI-compatible server whose behaviour is one function of the request."""

    def __init__(self, decide):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw}  # a file upload
                outer.requests.append(body)
                status, payload = decide(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def llama_cpp_like(body):
    """json_schema refused with a 500 validation error; json_object's schema enforced."""
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return 500, LLAMA_CPP_500
    if rf.get("type") == "json_object" and "schema" in rf:
        return 200, _completion(json.dumps(_satisfy(rf["schema"])))
    return 200, _completion("plain text")


def tools_only(body):
    """No response_format at all (400), but forced tool calls follow their parameters."""
    if "response_format" in body:
        return 400, {"error": {"message": "Unrecognized request argument supplied: response_format",
                               "param": "response_format"}}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        params = body["tools"][0]["function"]["parameters"]
        call = {"id": "call_1", "type": "function",
                "function": {"name": choice["function"]["name"], "arguments": json.dumps(_satisfy(params))}}
        return 200, _completion(None, [call])
    return 200, _completion("plain text")


def unconstrained(body):
    """Accepts everything, enforces nothing: replies with JSON that ignores the schema."""
    return 200, _completion('{"answer": "whatever"}')


def _model(url, tmp_path, sleeps=None, **overrides):
    cfg = ModelSettings(backend="openai", base_url=url, model="m", timeout_s=5, max_retries=3, **overrides)
    return OpenAIModel(cfg, sleep=(sleeps if sleeps is not None else []).append,
                       cache_path=tmp_path / "endpoints.json")


ANSWER = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
HI = [{"role": "user", "content": "2+2?"}]


def test_llama_cpp_server_gets_json_object_with_schema_and_the_choice_is_cached(tmp_path):
    with Endpoint(llama_cpp_like) as srv:
        sleeps: list[float] = []
        model = _model(srv.url, tmp_path, sleeps)
        result = model.complete(HI, schema=ANSWER)
        assert result.parsed == {"answer": 4}
        assert sleeps == []  # the refused json_schema probe was not retried
        forms = [(r.get("response_format") or {}).get("type") for r in srv.requests]
        assert forms == ["json_schema", "json_object", "json_object"]  # probe, probe, the call
        assert srv.requests[-1]["response_format"]["schema"] == ANSWER
        cached = json.loads((tmp_path / "endpoints.json").read_text())
        assert cached[f"{srv.url}#m"]["form"] == "json_object"

        again = _model(srv.url, tmp_path)  # another process: no second probe
        srv.requests.clear()
        assert again.complete(HI, schema=ANSWER).parsed == {"answer": 4}
        assert len(srv.requests) == 1
        info = again.describe()
        assert info["structured_output"] == "json_object" and info["structured_output_source"] == "cached"
        assert info["tool_mode"] == "json"  # that server does not parse tool calls in auto mode


def test_tool_calls_through_a_llama_cpp_like_server_use_the_json_schema_path(tmp_path):
    tools = [{"type": "function", "function": {"name": "calculator", "description": "math",
              "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                             "required": ["expression"]}}}]
    with Endpoint(llama_cpp_like) as srv:
        result = _model(srv.url, tmp_path).complete(HI, tools=tools, tool_choice="required")
    assert result.tool_calls[0].name == "calculator"
    assert "tools" not in srv.requests[-1]


def test_forced_tool_call_form_when_response_format_is_refused(tmp_path):
    anyof = {"anyOf": [ANSWER, {"type": "object", "properties": {"n": {"type": "string"}}}]}
    with Endpoint(tools_only) as srv:
        model = _model(srv.url, tmp_path)
        assert model.complete(HI, schema=ANSWER).parsed == {"answer": 4}
        assert model.complete(HI, schema=anyof).parsed == {"answer": 4}  # travels wrapped in "value"
        assert model.describe()["probe"]["tried"]["json_schema"].startswith("refused (HTTP 400)")
    assert srv.requests[-1]["tools"][0]["function"]["parameters"]["properties"]["value"] == anyof


def test_endpoint_that_enforces_nothing_gets_the_schema_in_the_prompt_and_validation(tmp_path):
    with Endpoint(unconstrained) as srv:
        model = _model(srv.url, tmp_path)
        with pytest.raises(OutputParseError, match="does not match the schema"):
            model.complete(HI, schema=ANSWER)  # {"answer": "whatever"} is not an integer
        assert model.structured_form() == "prompt"
        last = srv.requests[-1]
        assert "response_format" not in last and "tools" not in last
        assert json.dumps(ANSWER) in last["messages"][0]["content"]
        text_schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        assert model.complete(HI, schema=text_schema).parsed == {"answer": "whatever"}
        tried = model.describe()["probe"]["tried"]
    assert tried["json_schema"] == tried["json_object"] == tried["tools"] == "accepted, not enforced"


def test_replayed_issue_failure_ends_in_one_line_naming_response_format(tmp_path):
    """The issue's endpoint with the form forced to json_schema: one request, no retries."""
    with Endpoint(llama_cpp_like) as srv:
        sleeps: list[float] = []
        model = _model(srv.url, tmp_path, sleeps, structured_output="json_schema")
        with pytest.raises(RequestRejected) as info:
            model.complete(HI, schema=ANSWER)
    message = str(info.value)
    assert "response_format.type: Input should be 'text' or 'json_object'" in message
    assert "EVOLVE_MODEL__STRUCTURED_OUTPUT" in message and "unavailable" not in message
    assert "\n" not in message and len(srv.requests) == 1 and sleeps == []


def test_replayed_issue_failure_through_the_cli_is_one_line_and_nonzero(tmp_path):
    with Endpoint(llama_cpp_like) as srv:
        env = {**os.environ, "PYTHONPATH": str(REPO), "EVOLVE_HOME": str(tmp_path / "home"),
               "EVOLVE_MODEL__BACKEND": "openai", "EVOLVE_MODEL__BASE_URL": srv.url,
               "EVOLVE_MODEL__MODEL": "local", "EVOLVE_MODEL__TOOL_MODE": "json",
               "EVOLVE_MODEL__STRUCTURED_OUTPUT": "json_schema"}
        proc = subprocess.run([sys.executable, "-m", "agent.cli", "demo"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "response_format" in lines[0]
    assert "unavailable after" not in lines[0]
    assert len(srv.requests) == 1


def test_cached_form_that_the_endpoint_now_refuses_is_probed_again(tmp_path):
    cache = tmp_path / "endpoints.json"
    with Endpoint(llama_cpp_like) as srv:
        cache.write_text(json.dumps({f"{srv.url}#m": {"form": "json_schema", "tried": {}, "probed_at": ""}}))
        model = _model(srv.url, tmp_path)
        assert model.complete(HI, schema=ANSWER).parsed == {"answer": 4}
    assert json.loads(cache.read_text())[f"{srv.url}#m"]["form"] == "json_object"


def test_probe_during_an_outage_is_retried_and_not_cached(tmp_path):
    with Endpoint(lambda body: (503, {"error": {"message": "server overloaded"}})) as srv:
        sleeps: list[float] = []
        with pytest.raises(ModelUnavailable, match="HTTP 503"):
            _model(srv.url, tmp_path, sleeps).complete(HI, schema=ANSWER)
    assert len(sleeps) == 3
    assert not (tmp_path / "endpoints.json").exists()


def test_refusal_text_reaches_the_terminal_without_control_characters(tmp_path):
    evil = {"error": {"message": "bad \x1b[31mred\x1b[0m\r\nfield\x07", "param": "seed"}}
    with Endpoint(lambda body: (400, evil)) as srv:
        with pytest.raises(RequestRejected) as info:
            _model(srv.url, tmp_path).complete(HI)
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in str(info.value))
    assert "seed:" in str(info.value)


# One row per kind of answer seen or documented; never delete a row.
REFUSALS = [
    # (status, body text, refused?, field)
    (500, LLAMA_CPP_500["error"]["message"], True, "response_format.type"),
    (400, "Invalid value for 'response_format': json_schema is not supported with this model.", True,
     "response_format"),
    (400, "Unrecognized request argument supplied: stream_options", True, "stream_options"),
    (422, "{'type': 'extra_forbidden', 'loc': ('body', 'tool_choice'), 'msg': 'Extra inputs are not permitted'}",
     True, "tool_choice"),
    (500, "CUDA out of memory. Tried to allocate 2.00 GiB", False, ""),
    (502, "Bad gateway", False, ""),
    (503, "server overloaded, try later", False, ""),
    (429, "Rate limit reached", False, ""),
    (408, "Request timeout", False, ""),
    (401, "Invalid API key", False, ""),
]


@pytest.mark.parametrize(("status", "text", "refused", "field"), REFUSALS)
def test_what_counts_as_a_refusal(status, text, refused, field):
    assert is_refusal(status, text) is refused
    if refused:
        assert refused_field(text) == field


def test_endpoint_without_a_fine_tuning_api_says_so(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": []}\n')
    with Endpoint(lambda body: (404, {"detail": "Not Found"})) as srv:  # llama-cpp-python's server
        with pytest.raises(ConfigError, match="no fine-tuning API.*EVOLVE_LOOP__FINETUNE=export"):
            FineTuning(_model(srv.url, tmp_path)).submit(data, base_model="m", suffix="x")
