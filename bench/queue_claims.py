"""Worker-queue throughput: claims per second with several claimers on one store.

    python bench/queue_claims.py                                   # SQLite in a temp dir
    python bench/queue_claims.py --database-url postgresql+psycopg://evolve@127.0.0.1:5432/bench

Each claimer is a process with its own Store (as `evolve run` workers are), claiming with
`Store.claim_next` and marking each item done, until the queue is empty. Prints items, claimers,
wall seconds, claims/s, and checks that no item was claimed twice. On PostgreSQL the database
must be empty or disposable: the bench enqueues into it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import Settings  # noqa: E402
from memory.embeddings import HashEmbedder  # noqa: E402
from memory.models import Task  # noqa: E402
from memory.store import Store  # noqa: E402


def _store(home: Path, url: str) -> Store:
    settings = Settings(home=home, database_url=url)
    settings.ensure_dirs()
    return Store(settings, embedder=HashEmbedder())


def _claimer(home: str, url: str, name: str, start, out) -> None:
    store = _store(Path(home) / name, url)
    start.wait()
    got = []
    while (item := store.claim_next(name)) is not None:
        store.set_queue_item(item.id, status="done")
        got.append(item.id)
    out.put(got)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--claimers", type=int, default=4)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        store = _store(Path(tmp) / "filler", url)
        store.enqueue([Task(id=f"bench/train/{i}", suite="bench", split="train", question=f"q{i}")
                       for i in range(args.items)])
        ctx = mp.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_claimer, args=(tmp, url, f"c{i}", start, out)) for i in range(args.claimers)]
        for p in procs:
            p.start()
        time.sleep(3.0)  # let every claimer open its store before the clock starts
        t0 = time.perf_counter()
        start.set()
        claimed = [i for _ in procs for i in out.get()]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join()
        assert len(claimed) == args.items == len(set(claimed)), "an item was claimed twice or lost"
        backend = store.engine.dialect.name
        store.close()
    print(f"{backend}: {args.items} items, {args.claimers} claimer processes, {wall:.1f} s, "
          f"{args.items / wall:.0f} claims/s (claim + mark done), no item claimed twice")


if __name__ == "__main__":
    main()
