"""The one error tree evolve's CLI catches, and the three kinds of error it distinguishes.

- Retry: transport trouble (timeouts, connection resets, 429, 5xx). Retried with backoff in
  the model layer; when retries run out it surfaces as `ModelUnavailable`.
- Send back to the model: bad tool arguments, unparsable output. The agent sees the message
  as an observation and tries again (`ToolInputError`, `OutputParseError`).
- Raise: configuration, corruption or bad input (`ConfigError`, `IntegrityError`, `InputError`).
  The message names the offending value and says what to change. `IntegrityError` is the memory
  layer's (corrupt rows and corrupt weights are the same kind of error), re-exported here.

`tools/` and `memory/` sit below `agent/` and cannot import this module, so they define their
own roots (`tools.errors.ToolError`, `memory.errors.StoreError`); `USER_ERRORS` is the tuple the
CLI catches, so one `except` covers every layer.
"""

from __future__ import annotations

from memory.errors import IntegrityError, StoreConfigError, StoreError
from tools.errors import ToolConfigError, ToolError, ToolInputError

__all__ = [
    "ConfigError",
    "EvolveError",
    "InputError",
    "IntegrityError",
    "LockBusy",
    "ModelError",
    "ModelUnavailable",
    "OutputParseError",
    "StoreConfigError",
    "StoreError",
    "TaskTimeout",
    "ToolConfigError",
    "ToolError",
    "ToolInputError",
    "USER_ERRORS",
]


class EvolveError(Exception):
    """Base class for the agent layer's own errors."""


class ConfigError(EvolveError):
    """A setting is missing or wrong. The message names the setting and what to do."""


class InputError(EvolveError):
    """A task, question or file the user gave cannot be used. The message says why."""


class LockBusy(EvolveError):
    """Another process holds the lock this command needs (a worker, an improvement run)."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class TaskTimeout(EvolveError):
    """One task ran past its wall-clock limit."""


class ModelError(EvolveError):
    """The model backend failed in a way that is not a transport problem."""


class ModelUnavailable(ModelError):
    """The endpoint could not be reached or kept failing after all retries."""


class OutputParseError(EvolveError):
    """Model output did not match the requested schema. Goes back to the model."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


# What a user may see as one line: every layer's errors.
USER_ERRORS: tuple[type[Exception], ...] = (EvolveError, ToolError, StoreError)
