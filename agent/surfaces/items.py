"""`evolve show ITEM` and `evolve rate ITEM good|bad [--answer X]`.

ITEM names a queued task by its number (`evolve submit` prints it) or any episode as `e<id>`
(chat prints it after each answer). Rating is how work without a reference becomes verified
experience: see agent/loop/feedback.py for what the next cycle does with it.
"""

from __future__ import annotations

import re
from typing import Any

from agent.errors import InputError
from agent.surfaces.worker import rate_episode
from memory.models import Episode, QueueItem, Task

_REF = re.compile(r"^(?:(e|episode:?)(\d+)|(\d+))$", re.IGNORECASE)


def resolve(store, ref: str) -> tuple[QueueItem | None, Episode | None, Task | None]:
    m = _REF.match(ref.strip())
    if not m:
        raise InputError(f"item {ref!r}: give a queue item number (e.g. 3) or an episode as e<id> (e.g. e12)")
    if m.group(3):
        item = store.get_queue_item(int(m.group(3)))
        if item is None:
            raise InputError(f"no queue item {m.group(3)}; `evolve status` lists the recent ones")
        episode = store.get_episode(item.episode_id) if item.episode_id else None
        return item, episode, store.get_task(item.task_id)
    episode = store.get_episode(int(m.group(2)))
    if episode is None:
        raise InputError(f"no episode {m.group(2)}")
    return None, episode, store.get_task(episode.task_id)


def show(store, ref: str) -> dict[str, Any]:
    """Question, answer, verdict, feedback and trajectory of one item."""
    item, ep, task = resolve(store, ref)
    return {
        "item": item.id if item else None, "status": item.status if item else None,
        "episode": ep.id if ep else None, "source": ep.source if ep else None,
        "task": task.id if task else (item.task_id if item else None),
        "question": task.question if task else "", "reference": task.answer if task else "",
        "answer": ep.final_answer if ep else "", "verdict": ep.verdict if ep else (item.status if item else ""),
        "feedback": ep.feedback if ep else "", "error": (ep.error if ep else "") or (item.error if item else ""),
        "policy": ep.policy_id if ep else None, "model": ep.model_fingerprint if ep else None,
        "trajectory": ep.trajectory if ep else [],
    }


def rate(store, ref: str, good: bool, *, answer: str = "", why: str = "") -> Episode:
    """A person's verdict on an item's episode. `answer` (the right answer) is kept as the task's
    reference, so a bad answer can still teach the right one (quarantined until confirmed)."""
    item, ep, task = resolve(store, ref)
    if ep is None:
        raise InputError(f"item {ref} has no answer yet ({item.status if item else 'no episode'}); "
                         f"rate it after the worker has solved it")
    answer = answer.strip()
    if answer and task is not None:
        if task.split != "train":
            raise InputError(f"item {ref} is a {task.split} task; only train work can be rated")
        store.upsert_tasks([Task.model_validate({**task.model_dump(), "answer": answer})])
        why = why or f"the right answer is {answer}"
    return rate_episode(store, ep.id, good, why, rater="cli")
