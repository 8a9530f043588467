"""The OpenAI-compatible backend: any endpoint speaking /v1/chat/completions (OpenAI, vLLM,
Ollama, llama.cpp's servers), and its fine-tuning API where it has one.

Transport errors (timeouts, connection errors, 408, 429, genuine 5xx) are retried here with
tenacity; the SDK's own retries are off so there is exactly one retry policy. Refusals (see
agent/model/endpoint.py) are never retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from agent.config import ConfigError, ModelSettings
from agent.errors import ModelError, ModelUnavailable, OutputParseError
from agent.model.endpoint import Profile, ProfileCache, RequestRejected, cache_key, now_iso, rejection
from agent.model.llm import (
    Completion,
    ToolCall,
    Usage,
    _calls_from_object,
    _loads_or_raw,
    _nonnull_content,
    _with_system_note,
    plain_messages,
    sample_sequentially,
)
from agent.model.structured import (
    FORMS,
    PROBE_MESSAGES,
    PROBE_SCHEMA,
    Form,
    decode,
    request_kwargs,
    schema_prompt,
    schema_token_budget,
    tool_call_schema,
    tools_prompt,
)


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
    """Any OpenAI-compatible chat endpoint, chosen by base_url, api_key and model.

    Structured output uses the best form the endpoint supports (EVOLVE_MODEL__STRUCTURED_OUTPUT,
    "auto" = probe once and cache the result in `cache_path`).
    """

    def __init__(self, cfg: ModelSettings, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, cache_path: Path | None = None) -> None:
        import openai

        self._openai = openai
        self._cfg = cfg
        key = cfg.api_key.get_secret_value()
        if not cfg.base_url and not key:
            raise ConfigError(
                "no API key for OpenAI: set EVOLVE_MODEL__API_KEY (or OPENAI_API_KEY), or set "
                "EVOLVE_MODEL__BASE_URL to a local server, or use EVOLVE_MODEL__BACKEND=embedded"
            )
        if cfg.model in ("", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m") and not cfg.base_url:
            raise ConfigError("EVOLVE_MODEL__MODEL must name the endpoint's model, e.g. gpt-4o-mini")
        self._client = openai.OpenAI(
            base_url=cfg.base_url or None,
            api_key=key or "not-needed",  # local servers ignore it, the SDK insists on one
            timeout=cfg.timeout_s,
            max_retries=0,  # tenacity below is the only retry policy
        )
        self.name = cfg.model
        self._where = cfg.base_url or "https://api.openai.com/v1"
        self.fingerprint = f"openai:{self._where}#{cfg.model}"
        self.usage = Usage()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cache = ProfileCache(cache_path)
        self._key = cache_key(cfg.base_url, cfg.model)
        self._profile: Profile | None = None
        self._profile_source = ""

    # ------------------------------------------------------------ what the endpoint accepts

    def structured_form(self) -> Form:
        """The structured-output form used for this endpoint: configured, cached, or probed now."""
        configured = getattr(self._cfg, "structured_output", "auto")
        if configured != "auto":
            return configured
        if self._profile is None:
            cached = self._cache.get(self._key)
            if cached is not None:
                self._profile, self._profile_source = cached, "cached"
            else:
                self._profile, self._profile_source = self.probe(), "probed"
                self._cache.put(self._key, self._profile)
        return self._profile.form  # type: ignore[return-value]

    def probe(self) -> Profile:
        """Try each form with a schema no unconstrained model satisfies; the first enforced wins.

        Refusals move on to the next form; transport failures propagate (nothing is cached).
        """
        tried: dict[str, str] = {}
        for form in FORMS[:-1]:
            kwargs = {"model": self._cfg.model, "messages": list(PROBE_MESSAGES), "max_tokens": 32,
                      "temperature": 0.0, **request_kwargs(form, PROBE_SCHEMA)}
            try:
                resp = self._call(lambda: self._client.chat.completions.create(**kwargs))
            except RequestRejected as exc:
                tried[form] = f"refused (HTTP {exc.status}): {exc.detail[:120]}"
                continue
            self._count(resp, 0.0)
            msg = resp.choices[0].message
            try:
                decode(form, PROBE_SCHEMA, msg.content, msg.tool_calls)
            except OutputParseError:
                tried[form] = "accepted, not enforced"
                continue
            tried[form] = "enforced"
            return Profile(form=form, tried=tried, probed_at=now_iso())
        tried["prompt"] = "fallback: schema in the prompt, reply parsed and validated"
        return Profile(form="prompt", tried=tried, probed_at=now_iso())

    def native_tools(self) -> bool:
        """Send tools= natively? "auto" does where the endpoint speaks OpenAI's json_schema:
        llama-cpp-python's server (json_object form) does not parse tool calls in auto mode."""
        mode = self._cfg.tool_mode
        if mode != "auto":
            return mode == "native"
        return self.structured_form() == "json_schema"

    def describe(self) -> dict[str, Any]:
        """What `evolve model info` prints for an endpoint (probing it if not yet known)."""
        form = self.structured_form()
        info: dict[str, Any] = {"backend": "openai", "model": self.name, "base_url": self._where,
                                "fingerprint": self.fingerprint, "structured_output": form,
                                "tool_mode": "native" if self.native_tools() else "json"}
        if self._profile is not None:
            info["structured_output_source"] = self._profile_source
            info["probe"] = self._profile.as_dict()
        else:
            info["structured_output_source"] = "EVOLVE_MODEL__STRUCTURED_OUTPUT"
        return info

    # ------------------------------------------------------------ transport

    def _is_transport(self, exc: BaseException) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError, o.RateLimitError)):
            return True
        if isinstance(exc, o.APIStatusError):
            if exc.status_code == 408:
                return True
            return exc.status_code >= 500 and rejection(exc, self._where) is None
        return False

    def _call(self, fn: Callable[[], Any], *, not_found: str = "") -> Any:
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
            if not_found:
                raise ConfigError(not_found) from exc
            raise ConfigError(
                f"{self._cfg.base_url or 'OpenAI'} has no model {self._cfg.model!r} (404); "
                f"set EVOLVE_MODEL__MODEL to one it serves"
            ) from exc
        except self._openai.APIStatusError as exc:
            refused = rejection(exc, self._where)
            if refused is not None:
                raise refused from exc
            if self._is_transport(exc):
                raise ModelUnavailable(self._unavailable(exc)) from exc
            raise ModelError(f"endpoint refused the request ({exc.status_code}): {exc.message}") from exc
        except (self._openai.APITimeoutError, self._openai.APIConnectionError) as exc:
            raise ModelUnavailable(self._unavailable(exc)) from exc

    def _unavailable(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        what = f"HTTP {status}" if status else type(exc).__name__
        return (f"model endpoint {self._where} unavailable after {self._cfg.max_retries + 1} attempts "
                f"({what}); check EVOLVE_MODEL__BASE_URL and that the server is up")

    def _count(self, resp: Any, started: float) -> Usage:
        usage = Usage(
            prompt_tokens=getattr(resp.usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(resp.usage, "completion_tokens", 0) or 0,
            latency_s=time.perf_counter() - started if started else 0.0,
            calls=1,
        )
        self.usage.add(usage)
        return usage

    # ------------------------------------------------------------ calls

    def _structured_kwargs(self, kwargs: dict[str, Any], schema: dict[str, Any]) -> Form:
        form = self.structured_form()
        kwargs.update(request_kwargs(form, schema))
        if form == "prompt":
            kwargs["messages"] = _with_system_note(kwargs["messages"], schema_prompt(schema))
        kwargs["max_tokens"] = schema_token_budget(schema, kwargs["max_tokens"])
        return form

    def complete(self, messages, *, schema=None, tools=None, tool_choice="auto", max_tokens=None,
                 temperature=None, stop=None, seed=None) -> Completion:
        native = bool(tools) and self.native_tools()
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
        form: Form | None = None
        if schema is not None and not native:
            form = self._structured_kwargs(kwargs, schema)
        started = time.perf_counter()
        try:
            resp = self._call(lambda: self._client.chat.completions.create(**kwargs))
        except RequestRejected as exc:
            if form is None or self._profile_source != "cached" or not _about_structure(exc.field):
                raise
            # The endpoint changed since it was probed: forget the cached form and probe again.
            self._cache.put(self._key, None)
            self._profile = None
            for key in ("response_format", "tools", "tool_choice"):
                kwargs.pop(key, None)
            kwargs["messages"] = _with_system_note(msgs, tools_prompt(tools, allow_text=tool_choice != "required")) \
                if tools else msgs
            form = self._structured_kwargs(kwargs, schema)
            resp = self._call(lambda: self._client.chat.completions.create(**kwargs))
        usage = self._count(resp, started)
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
        elif form is not None:
            result.text, result.parsed = decode(form, schema, choice.message.content, choice.message.tool_calls)
            if tools:
                result.tool_calls, result.text = _calls_from_object(result.parsed, tool_names)
        return result

    def complete_many(self, messages, n, *, max_tokens=None, temperature=None,
                      seed=None) -> list[Completion]:
        """n samples as n requests (sample j seeded `seed + j`): servers differ in whether they
        honour `n`, so one request per sample is the portable default."""
        return sample_sequentially(self, messages, n, max_tokens=max_tokens,
                                   temperature=temperature, seed=seed)

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
        pieces = 0
        reported = False
        try:
            for chunk in stream:
                if chunk.usage:
                    reported = True
                    usage.prompt_tokens = chunk.usage.prompt_tokens or 0
                    usage.completion_tokens = chunk.usage.completion_tokens or 0
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces += 1
                    yield chunk.choices[0].delta.content
        except (self._openai.APITimeoutError, self._openai.APIConnectionError) as exc:
            raise ModelUnavailable(self._unavailable(exc)) from exc
        finally:
            if not reported:
                # llama-cpp-python's server ignores stream_options: one chunk is one token there.
                usage.completion_tokens = pieces
            usage.latency_s = time.perf_counter() - started
            self.usage.add(usage)


def _about_structure(field: str) -> bool:
    return field.startswith(("response_format", "tool"))


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
        # llama-cpp-python's server, Ollama and others have no such API: 404 on /v1/files.
        missing = (f"{self._model._where} has no fine-tuning API (404 on /files); set "
                   f"EVOLVE_LOOP__FINETUNE=export to write the training file instead")
        uploaded = self._model._call(lambda: client.files.create(file=("train.jsonl", data), purpose="fine-tune"),
                                     not_found=missing)
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


