"""The store on PostgreSQL with a Chroma server: migrations, firewall, idempotency, the queue's
SKIP LOCKED claims and leases, rebuild from SQL, and the improvement lock in the database.

Needs the servers of tests/services.py (skipped without them, failing under CI=true)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from agent.config import Settings
from agent.errors import LockBusy
from memory.embeddings import HashEmbedder
from memory.migrations import LATEST
from memory.models import Episode, Task
from memory.store import Store

TASKS = [
    Task(id="arith/train/1", suite="arith", split="train", question="add two and three", answer="5"),
    Task(id="arith/dev/1", suite="arith", split="dev", question="add four and four", answer="8"),
]


def make(tmp_path, pg_url, chroma_url="", name="home") -> tuple[Settings, Store]:
    settings = Settings(home=tmp_path / name, database_url=pg_url, memory={"chroma_url": chroma_url})
    settings.ensure_dirs()
    return settings, Store(settings, embedder=HashEmbedder(64))


def test_store_on_postgres_and_chroma_server(tmp_path, pg_url, chroma_url):
    settings, store = make(tmp_path, pg_url, chroma_url)
    assert store.engine.dialect.name == "postgresql" and store.index.remote
    assert store.stats()["schema_version"] == LATEST
    store.upsert_tasks(TASKS)
    ep = Episode(run_key="k1", task_id="arith/train/1", split="train", policy_id="p1", model_fingerprint="f",
                 verdict="pass")
    first = store.add_episode(ep)
    assert store.add_episode(Episode(**{**ep.model_dump(exclude={"id"}), "final_answer": "again"})).id == first.id
    good = store.add_experience("exemplar", "Q: add two and three\nA: 5", key="add two and three",
                                source_task_ids=["arith/train/1"])
    leaked = store.add_experience("exemplar", "Q: add four and four\nA: 8", key="add four and four",
                                  source_task_ids=["arith/dev/1"])
    assert leaked.split == "dev"  # the firewall holds on PostgreSQL too
    assert [r.id for r in store.retrieve("exemplar", "add four and four", 5)] == [good.id]
    store.close()

    # A second process on another home sees the same rows and the same server-side index.
    _, other = make(tmp_path, pg_url, chroma_url, name="home2")
    assert [r.id for r in other.retrieve("exemplar", "add two and three", 5)] == [good.id]
    # Rebuild from SQL against the server: drop every collection, then the open-time check
    # (a fresh store) or reindex brings them back from the stored vectors.
    other.index.drop_all()
    assert other.index.counts() == {}
    assert other.reindex() == 2
    assert other.check_index()["repaired"] == {}
    assert [r.id for r in other.retrieve("exemplar", "add two and three", 5)] == [good.id]
    other.close()


def test_concurrent_claims_never_share_an_item(tmp_path, pg_url):
    _, store = make(tmp_path, pg_url)
    store.upsert_tasks([Task(id=f"user/train/{i}", suite="user", split="train", question=f"q{i}")
                        for i in range(120)])
    store.enqueue(store.tasks())
    claimed: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine = claimed.setdefault(name, [])
        while (item := store.claim_next(name)) is not None:
            mine.append(item.id)
            store.set_queue_item(item.id, status="done")

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for got in claimed.values() for i in got]
    assert len(ids) == 120 and len(set(ids)) == 120
    assert store.queue_counts() == {"queued": 0, "running": 0, "done": 120, "error": 0}
    store.close()


def test_a_dead_workers_lease_is_reclaimed(tmp_path, pg_url):
    _, store = make(tmp_path, pg_url)
    store.enqueue([Task(id="user/train/a", suite="user", split="train", question="a")])
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    item = store.claim_next("dead", lease_s=60, now=t0)
    assert store.claim_next("alive", lease_s=60, now=t0 + timedelta(seconds=30)) is None  # still leased
    again = store.claim_next("alive", lease_s=60, now=t0 + timedelta(seconds=61))
    assert again.id == item.id and again.worker == "alive" and again.claims == 2
    assert not store.renew_lease(item.id, "dead")  # the old holder learns it lost the item
    assert store.requeue_interrupted("dead") == []  # and cannot take it back on restart
    store.close()


def test_the_improvement_lock_is_held_in_the_database(tmp_path, pg_url):
    from agent.surfaces.schedule import improvement_lock

    a, _ = make(tmp_path, pg_url, name="machine-a")
    b, _ = make(tmp_path, pg_url, name="machine-b")  # another home: its file lock is separate
    with improvement_lock(a, what="a"):
        with pytest.raises(LockBusy, match="database lock"):
            with improvement_lock(b, what="b"):
                pass
    with improvement_lock(b, what="b"):  # released with the block
        pass
