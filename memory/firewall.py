"""The split and trust rules every memory module applies (see memory/store.py's docstring).

Splits only get stricter (train < dev < test): a row's split is the most restrictive of what it
is given and what its sources say. Trust only rises by confirmation, never by an update.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from memory.models import SPLITS

SPLIT_RANK = {s: i for i, s in enumerate(SPLITS)}  # train < dev < test
TRUST_RANK = {"untrusted": 0, "unverified": 1, "verified": 2}


def now() -> datetime:
    return datetime.now(timezone.utc)


def digest_of(content: str) -> str:
    return hashlib.sha256(" ".join(content.split()).encode()).hexdigest()


def split_from_task_id(task_id: str) -> str | None:
    parts = task_id.split("/")
    return parts[1] if len(parts) >= 3 and parts[1] in SPLIT_RANK else None


def most_restrictive(*splits: str | None) -> str:
    known = [s for s in splits if s is not None]
    for s in known:
        if s not in SPLIT_RANK:
            raise ValueError(f"unknown split {s!r}; expected one of {SPLITS}")
    return max(known, key=SPLIT_RANK.__getitem__) if known else "train"


def task_split(task, task_id: str) -> str:
    """A task's split: the stored row's, made stricter by what its id says."""
    return most_restrictive(task.split if task is not None else None, split_from_task_id(task_id))
