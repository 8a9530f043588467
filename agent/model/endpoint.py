"""What an OpenAI-compatible endpoint refused, and what it was found to accept.

A refused request is not a transport failure. A 4xx (other than 401, 404, 408, 429) is the
endpoint saying "not like that"; so is a 5xx whose body is a request-validation error
(llama-cpp-python's server answers an unknown `response_format.type` with HTTP 500). Neither
is retried: retrying cannot change the answer, and "unavailable after 6 attempts" would send
the user looking at a server that is up. The one-line message names the refused field and the
setting that changes it.

The probe result (which structured-output form works) is cached per endpoint and model in a
small JSON file under EVOLVE_HOME, so every process of every worker probes at most once.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from agent.errors import ConfigError

# Phrases request validators use (pydantic/FastAPI, OpenAI, vLLM, Ollama); a genuine crash
# (CUDA OOM, a segfaulted worker) says none of these.
_VALIDATION = re.compile(
    r"validation error|input should be|literal_error|extra_forbidden|field required|"
    r"unrecognized request argument|unsupported (parameter|value)|not supported|"
    r"invalid (value|parameter|type|request)|unknown (field|parameter)|is not one of",
    re.I,
)
_LOC = re.compile(r"'loc':\s*\(([^)]*)\)")
_FIELD_COLON = re.compile(r"\b([a-z_]+(?:\.[a-z_]+)+):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

# Which setting changes which refused request field.
_FIXES = (
    ("response_format", "set EVOLVE_MODEL__STRUCTURED_OUTPUT=auto to probe what the endpoint accepts, "
                        "or to one of json_object, tools, prompt"),
    ("tool", "set EVOLVE_MODEL__TOOL_MODE=json (tool calls through a JSON schema instead of tools=)"),
    ("function", "set EVOLVE_MODEL__TOOL_MODE=json (tool calls through a JSON schema instead of tools=)"),
    ("max_tokens", "lower EVOLVE_MODEL__MAX_TOKENS"),
    ("model", "set EVOLVE_MODEL__MODEL to a model the endpoint serves"),
)
# Fields evolve sends, most specific first, for refusals that name one only in prose.
_REQUEST_FIELDS = ("response_format", "stream_options", "tool_choice", "tools", "max_tokens", "seed",
                   "stop", "temperature", "messages")
_GENERIC_FIX = ("check that EVOLVE_MODEL__BASE_URL is an OpenAI-compatible /v1 endpoint; "
                "see the README's compatibility table")


class RequestRejected(ConfigError):
    """The endpoint refused the request's shape. Not retried; the message names the fix."""

    def __init__(self, message: str, *, status: int, field: str, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.detail = detail


def clean(text: str, limit: int = 240) -> str:
    """Endpoint text reaches the terminal: no control characters, one short line."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def _body_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    parts = [str(getattr(exc, "message", "") or "")]
    if body is not None:
        parts.append(body if isinstance(body, str) else json.dumps(body, default=str))
    return " ".join(parts)


def is_refusal(status: int, text: str) -> bool:
    if status in (401, 404, 408, 429):
        return False  # auth and unknown model have their own messages; 408/429 are transient
    if 400 <= status < 500:
        return True
    return status >= 500 and bool(_VALIDATION.search(text))


def refused_field(text: str, body: Any = None) -> str:
    """The request field a refusal is about, e.g. "response_format.type", or "" if unsaid."""
    if isinstance(body, dict):
        err = body["error"] if isinstance(body.get("error"), dict) else body
        param = err.get("param")
        if isinstance(param, str) and param:
            return param
    loc = _LOC.search(text)
    if loc:
        names = [p.strip().strip("'\"") for p in loc.group(1).split(",")]
        names = [n for n in names if n and n != "body" and not n.isdigit()]
        if names:
            return ".".join(names)
    m = _FIELD_COLON.search(text)
    if m:
        return m.group(1)
    for name in _REQUEST_FIELDS:
        if re.search(rf"\b{name}\b", text):
            return name
    return ""


def _detail(text: str, body: Any) -> str:
    if isinstance(body, dict):
        err = body["error"] if isinstance(body.get("error"), dict) else body
        if isinstance(err.get("message"), str) and err["message"]:
            text = err["message"]
    m = re.search(r"'msg':\s*\"([^\"]+)\"|'msg':\s*'([^']+)'", text)
    if m:
        return m.group(1) or m.group(2)
    return text


def rejection(exc: Any, where: str) -> RequestRejected | None:
    """A RequestRejected for an openai.APIStatusError that is a refusal, else None."""
    status = int(getattr(exc, "status_code", 0) or 0)
    text = _body_text(exc)
    if not is_refusal(status, text):
        return None
    field = refused_field(text, getattr(exc, "body", None))
    fix = next((f for name, f in _FIXES if field.startswith(name) or (field and name in field)), _GENERIC_FIX)
    detail = clean(_detail(text, getattr(exc, "body", None)), 200)
    what = f"{field}: {detail}" if field else detail
    return RequestRejected(
        f"{where} refused the request (HTTP {status}, not retried): {what}; {fix}",
        status=status, field=field, detail=detail,
    )


# ---------------------------------------------------------------- probe cache


@dataclass
class Profile:
    """What the probe found for one endpoint and model."""

    form: str
    tried: dict[str, str]  # form -> "enforced" | "not enforced" | "refused: ..."
    probed_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"form": self.form, "tried": self.tried, "probed_at": self.probed_at}


def cache_key(base_url: str, model: str) -> str:
    return f"{base_url or 'https://api.openai.com/v1'}#{model}"


class ProfileCache:
    """A JSON file of endpoint profiles; writers take a file lock and replace atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a damaged cache only costs a new probe
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Profile | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict) or entry.get("form") not in ("json_schema", "json_object", "tools", "prompt"):
            return None
        return Profile(form=entry["form"], tried=dict(entry.get("tried") or {}),
                       probed_at=str(entry.get("probed_at", "")))

    def put(self, key: str, profile: Profile | None) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            data = self._read()
            if profile is None:
                data.pop(key, None)
            else:
                data[key] = profile.as_dict()
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
