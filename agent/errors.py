"""The three kinds of error evolve distinguishes.

- Retry: transport trouble (timeouts, connection resets, 429, 5xx). Retried with backoff in
  the model layer; when retries run out it surfaces as `ModelUnavailable`.
- Send back to the model: bad tool arguments, unparsable output. The agent sees the message
  as an observation and tries again (`ToolInputError`, `OutputParseError`).
- Raise: configuration or corruption (`ConfigError`, `IntegrityError`). The message names the
  offending value and says what to change.
"""

from __future__ import annotations

from agent.config import ConfigError

__all__ = [
    "ConfigError",
    "EvolveError",
    "IntegrityError",
    "ModelError",
    "ModelUnavailable",
    "OutputParseError",
    "ToolInputError",
]


class EvolveError(Exception):
    """Base class for evolve's own errors."""


class ModelError(EvolveError):
    """The model backend failed in a way that is not a transport problem."""


class ModelUnavailable(ModelError):
    """The endpoint could not be reached or kept failing after all retries."""


class OutputParseError(EvolveError):
    """Model output did not match the requested schema. Goes back to the model."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class ToolInputError(EvolveError):
    """A tool was called with arguments that fail validation. Goes back to the model."""


class IntegrityError(EvolveError):
    """Stored data or a downloaded artifact is corrupt or does not match its digest."""
