"""The model layer: one `ChatModel` interface, two real backends.

- `EmbeddedModel`: llama.cpp in-process (agent/model/local_model.py finds and verifies the weights).
- `OpenAIModel`: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server).

This is the only module that imports `openai`. Transport errors (timeouts, connection
errors, 429, 5xx) are retried here with tenacity; the SDK's own retries are off so there is
exactly one retry policy. Every call reports tokens, latency and the model fingerprint.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from agent.config import ConfigError, ModelSettings, Settings
from agent.errors import ModelError, ModelUnavailable, OutputParseError

Message = dict[str, Any]


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:12])

    def as_message_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency_s += other.latency_s
        self.calls += other.calls


@dataclass
class Completion:
    text: str
    usage: Usage
    model: str
    fingerprint: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    parsed: Any = None  # the decoded object when a schema was requested
    finish_reason: str = "stop"


@runtime_checkable
class ChatModel(Protocol):
    """What the agent needs from a model. Implemented by both backends and by test fakes."""

    name: str
    fingerprint: str
    usage: Usage

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str = "auto",
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]: ...


# ---------------------------------------------------------------- structured output helpers


def parse_json_lenient(text: str) -> Any:
    """Decode the first JSON value in `text`.

    Grammar-constrained small models may put raw newlines inside strings (the grammar allows
    them) or trail whitespace; fenced blocks from unconstrained endpoints are accepted too.
    """
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    if fence:
        s = fence.group(1).strip()
    start = min((i for i in (s.find("{"), s.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise OutputParseError(f"expected a JSON object, got: {text[:200]!r}", raw=text)
    decoder = json.JSONDecoder(strict=False)
    try:
        value, _ = decoder.raw_decode(s[start:])
    except json.JSONDecodeError as exc:
        raise OutputParseError(
            f"output is not valid JSON ({exc.msg} at char {exc.pos}); reply with one JSON object "
            f"matching the schema",
            raw=text,
        ) from None
    return value


def schema_token_budget(schema: dict[str, Any], floor: int) -> int:
    """A max_tokens that cannot cut a schema-valid answer short (the issue with small caps)."""

    def walk(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        total = 8
        if node.get("type") == "string":
            total += int(node.get("maxLength", 0))
        for key in ("properties",):
            for sub in node.get(key, {}).values():
                total += walk(sub) + 4
        for key in ("anyOf", "oneOf"):
            if key in node:
                total += max((walk(sub) for sub in node[key]), default=0)
        if "items" in node:
            total += walk(node["items"]) * int(node.get("maxItems", 4))
        return total

    return max(floor, walk(schema))


def tool_call_schema(tools: Sequence[dict[str, Any]], *, allow_text: bool) -> dict[str, Any]:
    """One JSON schema that admits a call to any given tool (and a plain reply if allowed)."""
    options = []
    for spec in tools:
        fn = spec.get("function", spec)
        options.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "enum": [fn["name"]]},
                    "arguments": fn.get("parameters") or {"type": "object"},
                },
                "required": ["tool", "arguments"],
            }
        )
    if allow_text:
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"type": "string", "enum": ["reply"]}, "content": {"type": "string"}},
                "required": ["tool", "content"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_prompt(tools: Sequence[dict[str, Any]], *, allow_text: bool) -> str:
    lines = ["You can call these tools. Answer with one JSON object: "
             '{"tool": NAME, "arguments": {...}}.']
    for spec in tools:
        fn = spec.get("function", spec)
        lines.append(f"- {fn['name']}: {fn.get('description', '').strip()} "
                     f"arguments schema: {json.dumps(fn.get('parameters', {}))}")
    if allow_text:
        lines.append('To answer without a tool: {"tool": "reply", "content": "..."}.')
    return "\n".join(lines)


def plain_messages(messages: Sequence[Message]) -> list[Message]:
    """Rewrite tool-call turns as plain text for templates and servers that lack tool roles.

    Assistant turns always get string content: llama.cpp's server rejects `content: null`.
    """
    out: list[Message] = []
    for msg in messages:
        role = msg.get("role")
        content = msg.get("content") or ""
        if role == "assistant" and msg.get("tool_calls"):
            calls = [
                {"tool": c["function"]["name"], "arguments": _loads_or_raw(c["function"]["arguments"])}
                for c in msg["tool_calls"]
            ]
            text = json.dumps(calls[0] if len(calls) == 1 else calls)
            out.append({"role": "assistant", "content": (content + "\n" + text).strip()})
        elif role == "tool":
            name = msg.get("name") or "tool"
            out.append({"role": "user", "content": f"[{name} result]\n{content}"})
        else:
            out.append({"role": role, "content": content})
    return out


def _loads_or_raw(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _calls_from_object(obj: Any, tool_names: set[str]) -> tuple[list[ToolCall], str]:
    """Turn a decoded {"tool", "arguments"} object into tool calls, or reply text."""
    if not isinstance(obj, dict) or "tool" not in obj:
        raise OutputParseError('expected {"tool": NAME, "arguments": {...}}', raw=json.dumps(obj))
    name = obj["tool"]
    if name == "reply":
        return [], str(obj.get("content", ""))
    if name not in tool_names:
        raise OutputParseError(
            f"unknown tool {name!r}; choose one of {sorted(tool_names)}", raw=json.dumps(obj)
        )
    args = obj.get("arguments", {})
    if not isinstance(args, dict):
        raise OutputParseError(f"arguments for {name!r} must be an object", raw=json.dumps(obj))
    return [ToolCall(name=name, arguments=args)], ""


# ---------------------------------------------------------------- embedded backend


class EmbeddedModel:
    """llama.cpp in-process. Tool calls always go through a JSON-schema grammar, because
    llama-cpp-python does not parse tool calls in auto mode."""

    def __init__(self, settings: Settings, *, llama: Any = None, fingerprint: str | None = None,
                 adapter: str = "") -> None:
        from agent.model import local_model

        self._cfg = settings.model
        if llama is None:
            path, sha = local_model.resolve_weights(self._cfg, settings.models_dir)
            lora = None
            if adapter:  # a policy's LoRA (agent/model/adapters.py), verified before loading
                from agent.model.adapters import resolve_adapter

                lora = resolve_adapter(settings.home, adapter)
            llama = local_model.load_llama(settings, path=path, lora_path=lora)
            fingerprint = f"gguf-sha256:{sha}" + (f"+lora:{lora.stem}" if lora else "")
        self._llama = llama
        self.name = self._cfg.model
        self.fingerprint = fingerprint or "gguf:unknown"
        self.usage = Usage()
        self._lock = threading.Lock()  # a Llama context is not safe for concurrent use

    def _params(self, max_tokens, temperature, stop, seed) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": max_tokens or self._cfg.max_tokens,
            "temperature": self._cfg.temperature if temperature is None else temperature,
            "stop": list(stop) if stop else None,
        }
        if seed is not None:
            params["seed"] = seed
        return params

    def complete(self, messages, *, schema=None, tools=None, tool_choice="auto", max_tokens=None,
                 temperature=None, stop=None, seed=None) -> Completion:
        msgs = plain_messages(messages)
        tool_names: set[str] = set()
        if tools:
            allow_text = tool_choice != "required"
            schema = tool_call_schema(tools, allow_text=allow_text)
            tool_names = {t.get("function", t)["name"] for t in tools}
            msgs = _with_system_note(msgs, tools_prompt(tools, allow_text=allow_text))
        params = self._params(max_tokens, temperature, stop, seed)
        if schema is not None:
            params["response_format"] = {"type": "json_object", "schema": schema}
            params["max_tokens"] = schema_token_budget(schema, params["max_tokens"])
        started = time.perf_counter()
        with self._lock:
            out = self._llama.create_chat_completion(messages=msgs, **params)
        usage = Usage(
            prompt_tokens=out["usage"]["prompt_tokens"],
            completion_tokens=out["usage"]["completion_tokens"],
            latency_s=time.perf_counter() - started,
            calls=1,
        )
        self.usage.add(usage)
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        result = Completion(text=text, usage=usage, model=self.name, fingerprint=self.fingerprint,
                            finish_reason=choice.get("finish_reason") or "stop")
        if schema is not None:
            result.parsed = parse_json_lenient(text)
            if tools:
                result.tool_calls, result.text = _calls_from_object(result.parsed, tool_names)
        return result

    def stream(self, messages, *, max_tokens=None, temperature=None, stop=None) -> Iterator[str]:
        params = self._params(max_tokens, temperature, stop, None)
        msgs = plain_messages(messages)
        started = time.perf_counter()
        pieces = 0
        with self._lock:
            for chunk in self._llama.create_chat_completion(messages=msgs, stream=True, **params):
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    pieces += 1
                    yield delta
        # Streaming chunks carry no usage from llama-cpp-python: count tokens ourselves.
        prompt_text = "".join(m["content"] for m in msgs)
        usage = Usage(prompt_tokens=len(self._llama.tokenize(prompt_text.encode(), add_bos=False)),
                      completion_tokens=pieces, latency_s=time.perf_counter() - started, calls=1)
        self.usage.add(usage)


def _with_system_note(messages: list[Message], note: str) -> list[Message]:
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{note}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


# ---------------------------------------------------------------- OpenAI-compatible backend


def _retry_after_seconds(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


def make_wait(base: float, cap: float, rng: random.Random) -> Callable[[RetryCallState], float]:
    """Exponential backoff with full jitter, capped, but never shorter than Retry-After."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = rng.uniform(0, min(cap, base * (2 ** (state.attempt_number - 1))))
        hinted = _retry_after_seconds(exc) if exc else None
        return min(cap, max(backoff, hinted or 0.0))

    return wait


class OpenAIModel:
    """Any OpenAI-compatible chat endpoint, chosen by base_url, api_key and model."""

    def __init__(self, cfg: ModelSettings, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        import openai

        self._openai = openai
        self._cfg = cfg
        key = cfg.api_key.get_secret_value()
        if not cfg.base_url and not key:
            raise ConfigError(
                "no API key for OpenAI: set EVOLVE_MODEL__API_KEY (or OPENAI_API_KEY), or set "
                "EVOLVE_MODEL__BASE_URL to a local server, or use EVOLVE_MODEL__BACKEND=embedded"
            )
        if cfg.model in ("", "qwen2.5-coder-0.5b", "smollm2-135m") and not cfg.base_url:
            raise ConfigError("EVOLVE_MODEL__MODEL must name the endpoint's model, e.g. gpt-4o-mini")
        self._client = openai.OpenAI(
            base_url=cfg.base_url or None,
            api_key=key or "not-needed",  # local servers ignore it, the SDK insists on one
            timeout=cfg.timeout_s,
            max_retries=0,  # tenacity below is the only retry policy
        )
        self.name = cfg.model
        host = cfg.base_url or "https://api.openai.com/v1"
        self.fingerprint = f"openai:{host}#{cfg.model}"
        self.usage = Usage()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._native_tools = cfg.tool_mode in ("auto", "native")

    def _is_transport(self, exc: BaseException) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError, o.RateLimitError)):
            return True
        return isinstance(exc, o.APIStatusError) and exc.status_code >= 500

    def _call(self, fn: Callable[[], Any]) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(self._is_transport),
            stop=stop_after_attempt(self._cfg.max_retries + 1),
            wait=make_wait(0.5, self._cfg.retry_max_wait_s, self._rng),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except self._openai.AuthenticationError as exc:
            raise ConfigError(
                f"{self._cfg.base_url or 'OpenAI'} rejected the API key (401); set EVOLVE_MODEL__API_KEY"
            ) from exc
        except self._openai.NotFoundError as exc:
            raise ConfigError(
                f"{self._cfg.base_url or 'OpenAI'} has no model {self._cfg.model!r} (404); "
                f"set EVOLVE_MODEL__MODEL to one it serves"
            ) from exc
        except self._openai.APIStatusError as exc:
            if self._is_transport(exc):
                raise ModelUnavailable(self._unavailable(exc)) from exc
            raise ModelError(f"endpoint refused the request ({exc.status_code}): {exc.message}") from exc
        except (self._openai.APITimeoutError, self._openai.APIConnectionError) as exc:
            raise ModelUnavailable(self._unavailable(exc)) from exc

    def _unavailable(self, exc: BaseException) -> str:
        where = self._cfg.base_url or "https://api.openai.com/v1"
        return (f"model endpoint {where} unavailable after {self._cfg.max_retries + 1} attempts "
                f"({type(exc).__name__}); check EVOLVE_MODEL__BASE_URL and that the server is up")

    def complete(self, messages, *, schema=None, tools=None, tool_choice="auto", max_tokens=None,
                 temperature=None, stop=None, seed=None) -> Completion:
        native = bool(tools) and self._native_tools
        msgs = list(messages) if native else plain_messages(messages)
        if native:
            msgs = [_nonnull_content(m) for m in msgs]
        kwargs: dict[str, Any] = {
            "model": self._cfg.model,
            "messages": msgs,
            "max_tokens": max_tokens or self._cfg.max_tokens,
            "temperature": self._cfg.temperature if temperature is None else temperature,
        }
        if stop:
            kwargs["stop"] = list(stop)
        if seed is not None:
            kwargs["seed"] = seed
        tool_names = {t.get("function", t)["name"] for t in tools or []}
        if native:
            kwargs["tools"] = [t if "function" in t else {"type": "function", "function": t} for t in tools]
            kwargs["tool_choice"] = tool_choice
        elif tools:
            allow_text = tool_choice != "required"
            schema = tool_call_schema(tools, allow_text=allow_text)
            kwargs["messages"] = _with_system_note(msgs, tools_prompt(tools, allow_text=allow_text))
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": False},
            }
            kwargs["max_tokens"] = schema_token_budget(schema, kwargs["max_tokens"])
        started = time.perf_counter()
        resp = self._call(lambda: self._client.chat.completions.create(**kwargs))
        usage = Usage(
            prompt_tokens=getattr(resp.usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(resp.usage, "completion_tokens", 0) or 0,
            latency_s=time.perf_counter() - started,
            calls=1,
        )
        self.usage.add(usage)
        choice = resp.choices[0]
        text = choice.message.content or ""
        result = Completion(text=text, usage=usage, model=resp.model or self.name,
                            fingerprint=self.fingerprint, finish_reason=choice.finish_reason or "stop")
        if native and choice.message.tool_calls:
            for call in choice.message.tool_calls:
                args = _loads_or_raw(call.function.arguments)
                if not isinstance(args, dict):
                    raise OutputParseError(
                        f"arguments for {call.function.name!r} are not a JSON object", raw=str(args)
                    )
                result.tool_calls.append(ToolCall(name=call.function.name, arguments=args, id=call.id))
        elif schema is not None:
            result.parsed = parse_json_lenient(text)
            if tools:
                result.tool_calls, result.text = _calls_from_object(result.parsed, tool_names)
        return result

    def stream(self, messages, *, max_tokens=None, temperature=None, stop=None) -> Iterator[str]:
        kwargs: dict[str, Any] = {
            "model": self._cfg.model,
            "messages": plain_messages(messages),
            "max_tokens": max_tokens or self._cfg.max_tokens,
            "temperature": self._cfg.temperature if temperature is None else temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            kwargs["stop"] = list(stop)
        started = time.perf_counter()
        # Only opening the stream is retried: once tokens have been shown, a retry would repeat them.
        stream = self._call(lambda: self._client.chat.completions.create(**kwargs))
        usage = Usage(calls=1)
        try:
            for chunk in stream:
                if chunk.usage:
                    usage.prompt_tokens = chunk.usage.prompt_tokens or 0
                    usage.completion_tokens = chunk.usage.completion_tokens or 0
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (self._openai.APITimeoutError, self._openai.APIConnectionError) as exc:
            raise ModelUnavailable(self._unavailable(exc)) from exc
        finally:
            usage.latency_s = time.perf_counter() - started
            self.usage.add(usage)


class FineTuning:
    """OpenAI-compatible fine-tuning jobs (the in-weight update path), with the same retries."""

    def __init__(self, model: OpenAIModel, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._model = model
        self._sleep = sleep
        self._clock = clock

    def submit(self, jsonl_path, *, base_model: str, suffix: str) -> str:
        client = self._model._client
        with open(jsonl_path, "rb") as fh:
            data = fh.read()
        uploaded = self._model._call(lambda: client.files.create(file=("train.jsonl", data), purpose="fine-tune"))
        job = self._model._call(lambda: client.fine_tuning.jobs.create(
            training_file=uploaded.id, model=base_model, suffix=suffix[:18]))
        return job.id

    def wait(self, job_id: str, *, poll_s: float = 30.0, timeout_s: float = 6 * 3600) -> str:
        """Poll until the job ends; returns the fine-tuned model id."""
        client = self._model._client
        deadline = self._clock() + timeout_s
        while True:
            job = self._model._call(lambda: client.fine_tuning.jobs.retrieve(job_id))
            if job.status == "succeeded" and job.fine_tuned_model:
                return job.fine_tuned_model
            if job.status in ("failed", "cancelled"):
                detail = getattr(job.error, "message", None) if job.error else None
                raise ModelError(f"fine-tuning job {job_id} {job.status}: {detail or 'no detail given'}")
            if self._clock() >= deadline:
                raise ModelError(f"fine-tuning job {job_id} still {job.status} after {timeout_s:.0f}s; "
                                 f"raise EVOLVE_LOOP__FINETUNE_TIMEOUT_S or check the job on the endpoint")
            self._sleep(poll_s)


def _nonnull_content(msg: Message) -> Message:
    if msg.get("role") == "assistant" and msg.get("content") is None:
        return {**msg, "content": ""}
    return msg


# ---------------------------------------------------------------- factory


def make_model(settings: Settings, *, model_id: str = "", adapter: str = "") -> ChatModel:
    """Build the configured backend (optionally another model id on the same endpoint, e.g. a
    fine-tuned one, or the embedded model with a stored LoRA adapter). Raises ConfigError with
    the setting to change."""
    if adapter and settings.model.backend != "embedded":
        raise ConfigError(f"policy adapter {adapter!r} needs EVOLVE_MODEL__BACKEND=embedded: LoRA "
                          f"adapters are applied by the embedded llama.cpp backend")
    if settings.model.backend == "openai":
        cfg = settings.model.model_copy(update={"model": model_id}) if model_id else settings.model
        return OpenAIModel(cfg)
    if model_id:
        raise ConfigError(f"policy model {model_id!r} needs EVOLVE_MODEL__BACKEND=openai: the embedded "
                          f"backend runs only its configured GGUF")
    return EmbeddedModel(settings, adapter=adapter)
