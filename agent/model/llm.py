"""The model layer: one `ChatModel` interface, two real backends.

- `EmbeddedModel`: llama.cpp in-process (agent/model/local_model.py finds and verifies the weights).
- `OpenAIModel`: any OpenAI-compatible endpoint (agent/model/openai_backend.py, re-exported
  here; the model layer is the only importer of `openai`, and retries transport errors there).

Every call reports tokens, latency and the model fingerprint.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from agent.config import ConfigError, Settings
from agent.errors import OutputParseError
from agent.model.structured import (  # noqa: F401  (re-exported: part of this module's API)
    parse_json_lenient,
    schema_token_budget,
    tool_call_schema,
    tools_prompt,
)

Message = dict[str, Any]
log = logging.getLogger("evolve.model")


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

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.latency_s + other.latency_s, self.calls + other.calls)

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

    def complete_many(
        self,
        messages: Sequence[Message],
        n: int,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Completion]:
        """n samples of one prompt; sample j is seeded `seed + j`. Their usages sum to what the
        call cost (a prompt evaluated once is counted once)."""
        ...


def sample_sequentially(model: ChatModel, messages: Sequence[Message], n: int, *,
                        max_tokens: int | None = None, temperature: float | None = None,
                        seed: int | None = None) -> list[Completion]:
    """The default complete_many: n completions, one call each; greedy (temperature 0) n > 1
    would repeat one answer n times, so it is one call shared by all n."""
    if n > 1 and temperature is not None and temperature <= 0:
        return _shared(model.complete(messages, max_tokens=max_tokens, temperature=temperature,
                                      seed=seed), n)
    return [model.complete(messages, max_tokens=max_tokens, temperature=temperature,
                           seed=None if seed is None else seed + j) for j in range(n)]


def complete_many(model: Any, messages: Sequence[Message], n: int, *, max_tokens: int | None = None,
                  temperature: float | None = None, seed: int | None = None) -> list[Completion]:
    """n samples from any model: its own complete_many (the embedded backend batches them), or
    sequential completions for a wrapper that only has complete()."""
    many = getattr(model, "complete_many", None)
    if many is None:
        return sample_sequentially(model, messages, n, max_tokens=max_tokens,
                                   temperature=temperature, seed=seed)
    return many(messages, n, max_tokens=max_tokens, temperature=temperature, seed=seed)


def _shared(one: Completion, n: int) -> list[Completion]:
    # One call's result for all n: the copies carry no usage, so the sum stays one call.
    return [one] + [replace(one, usage=Usage(), tool_calls=list(one.tool_calls)) for _ in range(n - 1)]


# ---------------------------------------------------------------- message helpers


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
                from agent.model.adapters import adapter_for_base

                lora = adapter_for_base(settings.home, adapter, path)
            llama = local_model.load_llama(settings, path=path, lora_path=lora)
            fingerprint = f"gguf-sha256:{sha}" + (f"+lora:{lora.stem}" if lora else "")
        self._llama = llama
        self.name = self._cfg.model
        self.fingerprint = fingerprint or "gguf:unknown"
        self.usage = Usage()
        self._lock = threading.Lock()  # a Llama context is not safe for concurrent use
        self.batch_fallbacks: dict[str, int] = {}  # why complete_many decoded sequentially

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


    def complete_many(self, messages, n, *, max_tokens=None, temperature=None,
                      seed=None) -> list[Completion]:
        """n samples of one prompt decoded together in one llama.cpp batch (the prompt once;
        agent/model/batch_decode.py); sample j is seeded `seed + j` (seed None: the configured
        model seed). Falls back to sequential completions, with one logged line saying why,
        when the batch cannot reproduce the request exactly."""
        params = self._params(max_tokens, temperature, None, seed)
        if n <= 1 or params["temperature"] <= 0:
            return sample_sequentially(self, messages, n, max_tokens=max_tokens,
                                       temperature=params["temperature"], seed=seed)
        from agent.model import batch_decode

        base = self._cfg.seed if seed is None else seed
        started = time.perf_counter()
        try:
            with self._lock:
                request = batch_decode.prepare(self._llama, plain_messages(messages),
                                               max_tokens=params["max_tokens"],
                                               temperature=params["temperature"])
                samples, _ = batch_decode.decoder_for(self._llama).generate(
                    request, [base + j for j in range(n)])
        except batch_decode.BatchUnavailable as exc:
            self._note_fallback(str(exc))
            return sample_sequentially(self, messages, n, max_tokens=max_tokens,
                                       temperature=params["temperature"], seed=base)
        latency = time.perf_counter() - started
        results = []
        for j, sample in enumerate(samples):
            # One call: the first sample carries the prompt, the latency and the call itself.
            usage = Usage(prompt_tokens=len(request.prompt) if j == 0 else 0,
                          completion_tokens=sample.completion_tokens,
                          latency_s=latency if j == 0 else 0.0, calls=1 if j == 0 else 0)
            self.usage.add(usage)
            results.append(Completion(text=sample.text, usage=usage, model=self.name,
                                      fingerprint=self.fingerprint, finish_reason=sample.finish_reason))
        return results

    def _note_fallback(self, reason: str) -> None:
        # Said once per reason and model, not once per task; counted every time.
        self.batch_fallbacks[reason] = self.batch_fallbacks.get(reason, 0) + 1
        if self.batch_fallbacks[reason] == 1:
            log.warning("samples decoded one after another, not in one batch: %s", reason)


def _with_system_note(messages: list[Message], note: str) -> list[Message]:
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{note}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def _nonnull_content(msg: Message) -> Message:
    if msg.get("role") == "assistant" and msg.get("content") is None:
        return {**msg, "content": ""}
    return msg


# ---------------------------------------------------------------- factory

# The OpenAI-compatible backend lives in its own module; it is part of this module's API.
from agent.model.openai_backend import FineTuning, OpenAIModel, make_wait  # noqa: E402,F401


def make_model(settings: Settings, *, model_id: str = "", adapter: str = "") -> ChatModel:
    """Build the configured backend (optionally another model id on the same endpoint, e.g. a
    fine-tuned one, or the embedded model with a stored LoRA adapter). Raises ConfigError with
    the setting to change."""
    if adapter and settings.model.backend != "embedded":
        raise ConfigError(f"policy adapter {adapter!r} needs EVOLVE_MODEL__BACKEND=embedded: LoRA "
                          f"adapters are applied by the embedded llama.cpp backend")
    if settings.model.backend == "openai":
        cfg = settings.model.model_copy(update={"model": model_id}) if model_id else settings.model
        return OpenAIModel(cfg, cache_path=settings.home / "endpoints.json")
    if model_id:
        raise ConfigError(f"policy model {model_id!r} needs EVOLVE_MODEL__BACKEND=openai: the embedded "
                          f"backend runs only its configured GGUF")
    return EmbeddedModel(settings, adapter=adapter)
