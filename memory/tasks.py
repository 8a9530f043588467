"""Tasks and episodes: what was asked, and each attempt at it (idempotent by `run_key`).

A task keeps its split for life; an episode's split is the strictest of its own and its task's.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlmodel import col, select

from memory.base import StoreBase
from memory.errors import IntegrityError
from memory.firewall import SPLIT_RANK, most_restrictive, split_from_task_id
from memory.models import SPLITS, Episode, Task


class TaskRecords(StoreBase):
    # -- tasks ----------------------------------------------------------------------------

    def upsert_tasks(self, tasks: Iterable[Task]) -> int:
        n = 0
        with self.session() as s:
            for t in tasks:
                if t.split not in SPLIT_RANK:
                    raise ValueError(f"task {t.id!r} has split {t.split!r}; expected one of {SPLITS}")
                existing = s.get(Task, t.id)
                if existing is not None and existing.split != t.split:
                    # Moving a held-out task into train would leak it; renaming is the fix.
                    raise IntegrityError(
                        f"task {t.id!r} is stored with split {existing.split!r}, not {t.split!r}; "
                        "give the task a new id instead of changing its split"
                    )
                s.merge(Task.model_validate(t.model_dump()))
                n += 1
        return n

    def get_task(self, task_id: str) -> Task | None:
        with self.session(read_only=True) as s:
            return s.get(Task, task_id)

    def tasks(self, suite: str | None = None, split: str | None = None, limit: int | None = None) -> list[Task]:
        with self.session(read_only=True) as s:
            q = select(Task).order_by(Task.id)
            if suite is not None:
                q = q.where(Task.suite == suite)
            if split is not None:
                q = q.where(Task.split == split)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    # -- episodes -------------------------------------------------------------------------

    def add_episode(self, ep: Episode) -> Episode:
        """Insert an episode; if its run_key exists, return the stored one unchanged."""
        try:
            with self.session() as s:
                found = s.exec(select(Episode).where(Episode.run_key == ep.run_key)).first()
                if found is not None:
                    return found
                task = s.get(Task, ep.task_id)
                row = Episode.model_validate(ep.model_dump(exclude={"id"}))
                row.split = most_restrictive(row.split, task.split if task else None, split_from_task_id(ep.task_id))
                s.add(row)
                s.flush()
                s.refresh(row)
                return row
        except SAIntegrityError:
            # Another writer (a database without write serialisation) inserted the key first.
            found = self.episode_by_key(ep.run_key)
            if found is None:
                raise
            return found

    def episode_by_key(self, run_key: str) -> Episode | None:
        with self.session(read_only=True) as s:
            return s.exec(select(Episode).where(Episode.run_key == run_key)).first()

    def get_episode(self, episode_id: int) -> Episode | None:
        with self.session(read_only=True) as s:
            return s.get(Episode, episode_id)

    def episodes(self, *, task_id: str | None = None, split: str | None = None, policy_id: str | None = None,
                 cycle: int | None = None, verdict: str | None = None, source: str | None = None,
                 limit: int | None = None) -> list[Episode]:
        with self.session(read_only=True) as s:
            q = select(Episode).order_by(Episode.id)
            for column, value in ((Episode.task_id, task_id), (Episode.split, split), (Episode.policy_id, policy_id),
                                  (Episode.cycle, cycle), (Episode.verdict, verdict), (Episode.source, source)):
                if value is not None:
                    q = q.where(column == value)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())


    def recent_error_episodes(self, limit: int = 5) -> list[Episode]:
        with self.session(read_only=True) as s:
            return list(s.exec(select(Episode).where(Episode.verdict == "error")
                               .order_by(col(Episode.id).desc()).limit(limit)).all())

    def count_episodes(self, *, verdict: str | None = None) -> int:
        with self.session(read_only=True) as s:
            q = select(func.count()).select_from(Episode)
            if verdict is not None:
                q = q.where(Episode.verdict == verdict)
            return int(s.exec(q).one())

    def episode_costs(self) -> list[tuple]:
        """(cycle, source, prompt_tokens, completion_tokens, latency_s, created_at, verdict) per
        episode, oldest first: what the report plots, without loading trajectories."""
        with self.session(read_only=True) as s:
            return [tuple(r) for r in s.exec(
                select(Episode.cycle, Episode.source, Episode.prompt_tokens, Episode.completion_tokens,
                       Episode.latency_s, Episode.created_at, Episode.verdict).order_by(col(Episode.id))).all()]

    def rate_episode(self, episode_id: int, good: bool, why: str = "") -> Episode:
        """A person's verdict on an episode: pass/fail, reward 1/0, the reason as feedback.

        The experiences the episode showed are credited (or not) only now, since a pending
        episode said nothing about them."""
        with self.session() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise KeyError(f"no episode {episode_id}")
            ep.verdict = "pass" if good else "fail"
            ep.reward = 1.0 if good else 0.0
            ep.feedback = (why.strip() or ("rated good" if good else "rated bad"))[:2000]
            s.add(ep)
            s.flush()
            s.refresh(ep)
        if ep.shown_experience_ids:
            self.record_usage(ep.id, ep.shown_experience_ids, good)
        return ep
