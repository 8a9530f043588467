"""The work queue (`evolve submit`), the checks on what a person types, and their ratings.

Durability comes from the database, not from the process: a queue item is `queued`, then
`running` while it is being solved, then `done` or `error` (the worker that takes items from
here is agent/surfaces/worker.py).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from agent.config import Settings
from agent.errors import InputError
from memory.models import Episode, QueueItem, Task

# A question is text a person typed or pasted; anything longer is almost surely a mistake
# (a file pasted whole), and would not fit the embedded model's context anyway.
MAX_QUESTION_CHARS = 20_000
USER_SUITE = "user"


def check_question(text: str, *, what: str = "question") -> str:
    if text is None or not text.strip():
        raise InputError(f"the {what} is empty; type the {what} in quotes, e.g. evolve submit \"What is 17*24?\"")
    if len(text) > MAX_QUESTION_CHARS:
        raise InputError(f"the {what} is {len(text):,} characters; the limit is {MAX_QUESTION_CHARS:,}. "
                         f"Shorten it, or put long material in a tasks file (docs/tasks.md)")
    return text.strip()


def user_task(question: str, *, answer: str = "", suite: str = USER_SUITE, split: str = "train") -> Task:
    """A task typed by a person: a training task (user tasks are training experience)."""
    question = check_question(question)
    digest = hashlib.sha256(f"{question}\x00{answer}".encode()).hexdigest()[:16]
    return Task(id=f"{suite}/{split}/{digest}", suite=suite, split=split, origin="user", kind="qa",
                question=question, answer=str(answer).strip())


# ---------------------------------------------------------------- the queue


def enqueue(store, tasks: list[Task]) -> list[QueueItem]:
    """Store the tasks and queue one item each, all in one transaction."""
    for t in tasks:
        check_question(t.question)
    return store.enqueue(tasks)


def submit_question(store, question: str, *, answer: str = "") -> QueueItem:
    return enqueue(store, [user_task(question, answer=answer)])[0]


def submit_file(store, path: Path) -> list[QueueItem]:
    """Queue every task of a user JSONL file; an invalid file queues nothing (read_task_file
    validates the whole file first)."""
    from agent.tasks.userfile import read_task_file

    return enqueue(store, read_task_file(Path(path)))


def queue_counts(store) -> dict[str, int]:
    return store.queue_counts()


def _set_item(store, item_id: int, **fields) -> None:
    store.set_queue_item(item_id, **fields)


def claim_next(store, worker: str = "", lease_s: float | None = None) -> QueueItem | None:
    """The oldest claimable item (queued, or held under a lease that ran out), now running
    under `worker`'s lease. Several workers on one store never get the same item."""
    lease = store.settings.memory.queue_lease_s if lease_s is None else lease_s
    return store.claim_next(worker, lease_s=lease)


def requeue_interrupted(store, worker: str | None = None) -> list[int]:
    """Items left `running` by `worker` before it died (or by anyone, when `worker` is None).
    Items of other workers on a shared store are theirs until their lease runs out."""
    return store.requeue_interrupted(worker)


def worker_id(settings: Settings) -> str:
    """Stable across restarts of the worker for one home (one worker per home, file lock)."""
    return f"{socket.gethostname()}:{Path(settings.home).resolve()}"


# ---------------------------------------------------------------- feedback


RATERS = ("chat", "cli")


def rate_episode(store, episode_id: int, good: bool, why: str = "", *, rater: str = "cli") -> Episode:
    """A person's verdict on an episode: pass/fail, reward 1/0, and who rated it and why as the
    feedback ("rated good by chat: ..."), which the next cycle's refine reads as provenance
    (agent/loop/feedback.py). Only train work can be rated: held-out episodes never become
    experience."""
    if rater not in RATERS:
        raise ValueError(f"unknown rater {rater!r}; expected one of {RATERS}")
    ep = store.get_episode(episode_id)
    if ep is None:
        raise InputError(f"no episode {episode_id}; `evolve status` lists the recent ones")
    if ep.split != "train":
        raise InputError(f"episode {episode_id} is a {ep.split} episode; only train work can be rated")
    note = f"rated {'good' if good else 'bad'} by {rater}" + (f": {why.strip()}" if why.strip() else "")
    return store.rate_episode(episode_id, good, note)
