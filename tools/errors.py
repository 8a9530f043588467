"""Errors raised by the tools layer. `agent/errors.py` folds them into the one tree the CLI catches.

- `ToolInputError`: the model called a tool with bad arguments; the message goes back to it.
- `ToolConfigError`: the tool cannot run as configured (no bubblewrap, a bad setting); the
  message names the setting and what to do.
"""

from __future__ import annotations


class ToolError(Exception):
    """Base class of the tools layer's errors."""


class ToolInputError(ToolError):
    """A tool was called with arguments that fail validation. Goes back to the model."""


class ToolConfigError(ToolError):
    """A tool cannot run as configured. Raised to the user with the setting to change."""
