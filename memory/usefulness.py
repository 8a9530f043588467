"""Usefulness: which experiences were shown in which episode, and how it ended.

Counts move only for train episodes, so held-out results never steer what is shown; a
quarantined experience shown in a passing train episode is confirmed by it.
"""

from __future__ import annotations

from typing import Iterable

from sqlmodel import select

from memory.base import StoreBase
from memory.firewall import most_restrictive, now, split_from_task_id
from memory.index import bucket_name
from memory.models import Episode, Experience, ExperienceUsage, Task


class UsageRecords(StoreBase):
    # -- usefulness -----------------------------------------------------------------------

    def record_usage(self, episode_id: int, experience_ids: Iterable[int], success: bool) -> int:
        """Record that `experience_ids` were shown in `episode_id`; returns how many were new.

        Idempotent per (episode, experience). Counts move only for train episodes. A quarantined
        experience shown in a passing train episode is confirmed by it."""
        ids = sorted(set(int(i) for i in experience_ids))
        to_confirm: list[int] = []
        new = 0
        with self.session() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise KeyError(f"no episode with id {episode_id}")
            task = s.get(Task, ep.task_id)
            counts = most_restrictive(ep.split, task.split if task else None, split_from_task_id(ep.task_id)) == "train"
            for eid in ids:
                row = s.get(Experience, eid)
                if row is None:
                    continue
                seen = s.exec(select(ExperienceUsage).where(ExperienceUsage.episode_id == episode_id,
                                                            ExperienceUsage.experience_id == eid)).first()
                if seen is not None:
                    continue
                s.add(ExperienceUsage(episode_id=episode_id, experience_id=eid, success=bool(success)))
                new += 1
                if counts:
                    row.uses += 1
                    row.successes += int(bool(success))
                    row.updated_at = now()
                    s.add(row)
                    if success and ep.verdict == "pass" and row.trust != "verified" and row.active:
                        to_confirm.append(eid)
            shown = sorted(set(ep.shown_experience_ids or []) | set(ids))
            if shown != list(ep.shown_experience_ids or []):
                ep.shown_experience_ids = shown
                s.add(ep)
        for eid in to_confirm:
            self._set_trust(eid, "verified", confirmed_by=episode_id)
        return new

    def prune(self, min_uses: int = 5, max_usefulness: float = 0.2) -> int:
        """Deactivate experiences shown at least `min_uses` times whose usefulness is at most
        `max_usefulness`; returns how many."""
        with self.session(read_only=True) as s:
            rows = s.exec(select(Experience).where(Experience.active == True, Experience.uses >= min_uses)).all()  # noqa: E712
            doomed = [r for r in rows if r.usefulness <= max_usefulness]
        if not doomed:
            return 0
        index = self.index
        with index.writing():
            with self.session() as s:
                for r in doomed:
                    row = s.get(Experience, r.id)
                    row.active = False
                    row.meta = {**row.meta, "pruned": {"uses": row.uses, "successes": row.successes}}
                    row.updated_at = now()
                    s.add(row)
            by_bucket: dict[str, list[int]] = {}
            for r in doomed:
                by_bucket.setdefault(bucket_name(r.kind, r.split, r.trust), []).append(r.id)
            for bucket, ids in by_bucket.items():
                index.delete(bucket, ids)
        return len(doomed)
