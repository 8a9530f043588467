"""Errors raised by the memory layer. `agent/errors.py` folds them into the one tree the CLI catches."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the memory layer's errors."""


class StoreConfigError(StoreError):
    """The store cannot open as configured (database URL, schema newer than this code, missing
    embedding weights). The message names the setting and what to do."""


class IntegrityError(StoreError):
    """Stored data or a derived artifact is corrupt or does not match its digest."""
