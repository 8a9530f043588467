"""The worker queue: items `queued`, then `running` under a worker's lease, then `done`/`error`.

Many workers, one queue. A claim takes the oldest item that is queued, or running under a lease
that has run out (its worker died or lost the database). On PostgreSQL the claim reads with
`SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent claimers each lock a different row and never
wait on one another; on SQLite the write transaction (`BEGIN IMMEDIATE`, memory/db.py) already
serialises claimers. A worker renews its lease while it works; the item's episode is keyed by
the item (`worker/q<id>`), so a reclaimed item that its first worker also finishes still yields
one episode.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import func, or_
from sqlmodel import col, select

from memory.base import StoreBase
from memory.models import QueueItem, Task

DEFAULT_LEASE_S = 900.0
QUEUE_STATES = ("queued", "running", "done", "error")


def _utc(clock: datetime | None = None) -> datetime:
    # SQLModel's datetime columns take aware values and store UTC on every engine.
    return (clock or datetime.now(timezone.utc)).astimezone(timezone.utc)


class QueueRecords(StoreBase):
    def enqueue(self, tasks: Iterable[Task]) -> list[QueueItem]:
        """Store the tasks and queue one item each."""
        tasks = list(tasks)
        self.upsert_tasks(tasks)
        with self.session() as s:
            items = [QueueItem(task_id=t.id) for t in tasks]
            s.add_all(items)
            s.flush()
            for item in items:
                s.refresh(item)
        return items

    def queue_counts(self) -> dict[str, int]:
        with self.session(read_only=True) as s:
            rows = s.exec(select(QueueItem.status, func.count()).group_by(QueueItem.status)).all()
        counts = dict.fromkeys(QUEUE_STATES, 0)
        counts.update({status: int(n) for status, n in rows})
        return counts

    def queue_items(self, *, status: str | None = None, newest_first: bool = False,
                    limit: int | None = None) -> list[QueueItem]:
        with self.session(read_only=True) as s:
            q = select(QueueItem)
            if status is not None:
                q = q.where(QueueItem.status == status)
            if newest_first:
                q = q.order_by(col(QueueItem.updated_at).desc(), col(QueueItem.id).desc())
            else:
                q = q.order_by(col(QueueItem.id))
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q).all())

    def claim_next(self, worker: str = "", *, lease_s: float = DEFAULT_LEASE_S,
                   now: datetime | None = None) -> QueueItem | None:
        """The oldest claimable item, now `running` under `worker`'s lease; None if there is none."""
        at = _utc(now)
        # A running item without a lease was claimed before leases existed (schema v2).
        claimable = or_(QueueItem.status == "queued",
                        (QueueItem.status == "running")
                        & or_(col(QueueItem.lease_until) < at, col(QueueItem.lease_until).is_(None)))
        # LIMIT matters: without it every queued row would be read on every claim.
        q = select(QueueItem).where(claimable).order_by(col(QueueItem.id)).limit(1)
        if self.engine.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self.session() as s:
            row = s.exec(q).first()
            if row is None:
                return None
            row.status = "running"
            row.worker = worker
            row.lease_until = at + timedelta(seconds=lease_s)
            row.claims += 1
            row.updated_at = datetime.now(timezone.utc)
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def renew_lease(self, item_id: int, worker: str, *, lease_s: float = DEFAULT_LEASE_S,
                    now: datetime | None = None) -> bool:
        """Extend `worker`'s lease on a running item; False if the item is no longer its own."""
        with self.session() as s:
            row = s.get(QueueItem, item_id)
            if row is None or row.status != "running" or row.worker != worker:
                return False
            row.lease_until = _utc(now) + timedelta(seconds=lease_s)
            s.add(row)
            return True

    def set_queue_item(self, item_id: int, **fields) -> QueueItem:
        """Set an item's status (and error, episode_id); leaving `running` ends its lease."""
        with self.session() as s:
            row = s.get(QueueItem, item_id)
            if row is None:
                raise KeyError(f"no queue item {item_id}")
            for k, v in fields.items():
                setattr(row, k, v)
            if row.status != "running":
                row.lease_until = None
            row.updated_at = datetime.now(timezone.utc)
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def requeue_interrupted(self, worker: str | None = None) -> list[int]:
        """Put back items left `running` by `worker` (a restarted worker, same id) or claimed
        without a worker id, or every running item when `worker` is None (one worker on this
        queue, holding its lock)."""
        with self.session() as s:
            q = select(QueueItem).where(QueueItem.status == "running")
            if worker is not None:
                q = q.where(col(QueueItem.worker).in_([worker, ""]))
            rows = s.exec(q.order_by(col(QueueItem.id))).all()
            for row in rows:
                row.status = "queued"
                row.lease_until = None
                row.updated_at = datetime.now(timezone.utc)
                s.add(row)
            return [r.id for r in rows]
