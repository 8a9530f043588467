"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.config import ConfigError, ModelSettings
from agent.errors import ModelError, ModelUnavailable
from agent.model.endpoint import RequestRejected
from agent.model.llm import OpenAIModel


def _completion(content="ok", tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "c1", "object": "chat.completion", "created": 0, "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


class Scripted:
    """A local endpoint answering each request with the next scripted reply."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append(json.loads(body or b"{}"))
                reply = outer.replies.pop(0) if outer.replies else (200, _completion(), {})
                status, payload, headers = reply
                if status == "slow":
                    outer.release.wait(5)  # longer than the client's timeout
                    return
                if status == "sse":
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for chunk in payload:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

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


def _model(url, sleeps, **overrides):
    # Pinned to json_schema so these tests script no probe requests; tests/test_llm_probe.py
    # covers "auto".
    overrides.setdefault("structured_output", "json_schema")
    cfg = ModelSettings(backend="openai", base_url=url, model="test-model", timeout_s=0.5,
                        max_retries=3, retry_max_wait_s=30, **overrides)
    return OpenAIModel(cfg, sleep=sleeps.append)


ERR = {"error": {"message": "boom", "type": "server_error"}}


def test_429_is_retried_and_retry_after_is_honoured():
    sleeps = []
    with Scripted([(429, ERR, {"retry-after": "7"}), (429, ERR, {"retry-after": "7"}),
                   (200, _completion("fine"), {})]) as srv:
        result = _model(srv.url, sleeps).complete([{"role": "user", "content": "hi"}])
    assert result.text == "fine"
    assert len(srv.requests) == 3
    assert sleeps == [7.0, 7.0]


def test_retry_after_is_capped():
    sleeps = []
    with Scripted([(429, ERR, {"retry-after": "3600"}), (200, _completion(), {})]) as srv:
        _model(srv.url, sleeps, ).complete([{"role": "user", "content": "hi"}])
    assert sleeps == [30.0]


def test_5xx_is_retried_with_growing_backoff():
    sleeps = []
    with Scripted([(500, ERR, {}), (503, ERR, {}), (502, ERR, {}), (200, _completion("up"), {})]) as srv:
        result = _model(srv.url, sleeps).complete([{"role": "user", "content": "hi"}])
    assert result.text == "up" and len(srv.requests) == 4
    assert len(sleeps) == 3 and all(0 <= s <= 30 for s in sleeps)


def test_slow_response_times_out_and_is_retried():
    sleeps = []
    with Scripted([("slow", None, {}), (200, _completion("late but fine"), {})]) as srv:
        result = _model(srv.url, sleeps, ).complete([{"role": "user", "content": "hi"}])
    assert result.text == "late but fine"
    assert len(sleeps) == 1


def test_persistent_5xx_gives_up_with_a_clear_error():
    sleeps = []
    with Scripted([(500, ERR, {})] * 10) as srv:
        with pytest.raises(ModelUnavailable, match="EVOLVE_MODEL__BASE_URL"):
            _model(srv.url, sleeps).complete([{"role": "user", "content": "hi"}])
    assert len(srv.requests) == 4  # max_retries=3 -> 4 attempts
    assert len(sleeps) == 3


def test_client_errors_are_not_retried():
    sleeps = []
    with Scripted([(400, {"error": {"message": "bad field"}}, {})]) as srv:
        with pytest.raises(RequestRejected, match="HTTP 400, not retried.*bad field"):
            _model(srv.url, sleeps).complete([{"role": "user", "content": "hi"}])
    assert len(srv.requests) == 1 and sleeps == []


def test_bad_key_names_the_setting():
    with Scripted([(401, {"error": {"message": "invalid key"}}, {})]) as srv:
        with pytest.raises(ConfigError, match="EVOLVE_MODEL__API_KEY"):
            _model(srv.url, []).complete([{"role": "user", "content": "hi"}])


def test_unknown_model_names_the_setting():
    with Scripted([(404, {"error": {"message": "no such model"}}, {})]) as srv:
        with pytest.raises(ConfigError, match="EVOLVE_MODEL__MODEL"):
            _model(srv.url, []).complete([{"role": "user", "content": "hi"}])


def test_unreachable_endpoint_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    sleeps = []
    with pytest.raises(ModelUnavailable, match=f"127.0.0.1:{port}"):
        _model(f"http://127.0.0.1:{port}/v1", sleeps).complete([{"role": "user", "content": "hi"}])
    assert len(sleeps) == 3


def test_missing_api_key_for_openai_proper_is_a_config_error():
    with pytest.raises(ConfigError, match="EVOLVE_MODEL__API_KEY"):
        OpenAIModel(ModelSettings(backend="openai", model="gpt-4o-mini"))


def test_native_tool_calls_and_usage():
    call = {"id": "call_1", "type": "function",
            "function": {"name": "calculator", "arguments": "{\"expression\": \"2+2\"}"}}
    tools = [{"type": "function", "function": {"name": "calculator", "description": "math",
              "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]
    with Scripted([(200, _completion(None, [call]), {})]) as srv:
        model = _model(srv.url, [])
        history = [{"role": "user", "content": "2+2?"},
                   {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "4"}]
        result = model.complete(history, tools=tools)
    assert result.tool_calls[0].name == "calculator"
    assert result.tool_calls[0].arguments == {"expression": "2+2"}
    sent = srv.requests[0]
    assert sent["tools"][0]["function"]["name"] == "calculator"
    # llama.cpp's server rejects content: null on assistant turns
    assert all(m.get("content") is not None for m in sent["messages"])
    assert result.usage.prompt_tokens == 11 and result.usage.completion_tokens == 3
    assert model.fingerprint.startswith("openai:") and model.usage.calls == 1


def test_json_tool_mode_uses_a_schema_instead_of_native_tools():
    tools = [{"type": "function", "function": {"name": "calculator", "description": "math",
              "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]
    reply = json.dumps({"tool": "calculator", "arguments": {"expression": "6*7"}})
    with Scripted([(200, _completion(reply), {})]) as srv:
        result = _model(srv.url, [], tool_mode="json").complete(
            [{"role": "user", "content": "6*7?"}], tools=tools)
    assert result.tool_calls[0].arguments == {"expression": "6*7"}
    assert "tools" not in srv.requests[0]
    assert srv.requests[0]["response_format"]["type"] == "json_schema"


def test_structured_output_is_parsed_leniently():
    with Scripted([(200, _completion('```json\n{"answer": "line one\nline two"}\n```'), {})]) as srv:
        schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 2000}}}
        result = _model(srv.url, []).complete([{"role": "user", "content": "x"}], schema=schema,
                                              max_tokens=16)
    assert result.parsed == {"answer": "line one\nline two"}
    assert srv.requests[0]["max_tokens"] > 2000  # above the schema's total string length


def test_streaming_yields_tokens_and_records_usage():
    chunks = [
        {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in ("Hel", "lo", "!")
    ]
    chunks.append({"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    with Scripted([("sse", chunks, {})]) as srv:
        model = _model(srv.url, [])
        text = "".join(model.stream([{"role": "user", "content": "hi"}]))
    assert text == "Hello!"
    assert model.usage.completion_tokens == 3 and model.usage.prompt_tokens == 5
