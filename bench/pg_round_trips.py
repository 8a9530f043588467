"""Requests a worker's store calls send to PostgreSQL per task, counted in the client.

    python bench/pg_round_trips.py --database-url postgresql+psycopg://evolve@127.0.0.1:PORT/postgres
    python bench/pg_round_trips.py --database-url ... --db-module /tmp/db_old.py   # another memory/db.py

One "task" is the store side of `evolve run` solving one queue item (claim, task, incumbent,
lease renewal, episode lookup, episode, finish), on a fresh database created on that server.
Counts psycopg's sends (commands such as BEGIN/COMMIT, queries, prepared executions and
prepares): each waits for the server, which on a loaded machine means waiting for the server to
be scheduled. `--db-module` loads another version of memory/db.py in its place (e.g. `git show
OLD:memory/db.py > /tmp/db_old.py`), to compare.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COUNTED = {"_connection_base.BaseConnection": ["_exec_command"],
           "_cursor_base.BaseCursor": ["_execute_send", "_send_query_prepared", "_send_prepare"]}


def _count_sends(counts: collections.Counter) -> None:
    import psycopg._connection_base as conn_mod
    import psycopg._cursor_base as cur_mod

    for cls in (conn_mod.BaseConnection, cur_mod.BaseCursor):
        for name in COUNTED[f"{cls.__module__.split('.')[-1]}.{cls.__name__}"]:
            orig = getattr(cls, name)

            def counted(self, *a, _orig=orig, _name=name, **k):
                counts[_name] += 1
                return _orig(self, *a, **k)

            setattr(cls, name, counted)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True, help="a PostgreSQL server; a scratch database is created on it")
    ap.add_argument("--db-module", default="", help="a memory/db.py to use instead of this tree's")
    ap.add_argument("--tasks", type=int, default=10)
    args = ap.parse_args()
    if args.db_module:
        spec = importlib.util.spec_from_file_location("memory.db", args.db_module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["memory.db"] = mod
        spec.loader.exec_module(mod)
    import psycopg
    from sqlalchemy.engine import make_url

    from agent.config import Settings
    from agent.policy import ensure_initial, incumbent
    from memory.embeddings import HashEmbedder
    from memory.models import Episode, Task
    from memory.store import Store

    admin = make_url(args.database_url)
    name = f"rt_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    counts: collections.Counter = collections.Counter()
    _count_sends(counts)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp), database_url=admin.set(database=name).render_as_string(
            hide_password=False)), embedder=HashEmbedder())
        ensure_initial(store)
        warm = 3
        store.enqueue([Task(id=f"rt/train/{i}", suite="rt", split="train", question=f"q{i}", answer="1")
                       for i in range(args.tasks + warm)])

        def one_task() -> None:
            item = store.claim_next("w")
            task = store.get_task(item.task_id)
            policy = incumbent(store)
            store.renew_lease(item.id, "w")
            store.episode_by_key(f"worker/q{item.id}")
            ep = store.add_episode(Episode(run_key=f"worker/q{item.id}", task_id=task.id, split="train",
                                           policy_id=policy.id, verdict="pass", model_fingerprint="bench"))
            store.set_queue_item(item.id, status="done", episode_id=ep.id)

        for _ in range(warm):  # the pool and psycopg's prepared statements settle
            one_task()
        counts.clear()
        for _ in range(args.tasks):
            one_task()
        store.close()
    per = {k: v / args.tasks for k, v in sorted(counts.items())}
    print(f"{args.db_module or 'memory/db.py'}: {sum(per.values()):.1f} requests per task {per}")


if __name__ == "__main__":
    main()
