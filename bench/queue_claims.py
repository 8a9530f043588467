"""Worker-queue throughput: claims per second with several claimers on one store.

    python bench/queue_claims.py                                   # SQLite in a temp dir
    python bench/queue_claims.py --database-url postgresql+psycopg://evolve@127.0.0.1:5432/bench

Each claimer is a process with its own Store (as `evolve run` workers are), claiming with
`Store.claim_next` and marking each item done, until the queue is empty. Prints items, claimers,
wall seconds, claims/s, and checks that no item was claimed twice. On PostgreSQL the database
must be empty or disposable: the bench enqueues into it.

On a shared machine the wall rate says more about the other load than about the queue, so the
bench also prints the CPU the claimers spent per claim (their own process time and, on
PostgreSQL on this machine, the server backend serving each of them, read from /proc).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process on this machine, 0.0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_pid(store: Store) -> int | None:
    if store.engine.dialect.name != "postgresql":
        return None
    with store.engine.connect() as conn:  # the pooled connection the claims use
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())


def _claimer(home: str, url: str, name: str, start, out) -> None:
    store = _store(Path(home) / name, url)
    backend = _backend_pid(store)
    start.wait()
    cpu0, server0 = time.process_time(), _proc_cpu_s(backend) if backend else 0.0
    got = []
    while (item := store.claim_next(name)) is not None:
        store.set_queue_item(item.id, status="done")
        got.append(item.id)
    server = (_proc_cpu_s(backend) - server0) if backend else 0.0
    out.put((got, time.process_time() - cpu0, server))
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
        results = [out.get() for _ in procs]
        wall = time.perf_counter() - t0
        claimed = [i for got, _, _ in results for i in got]
        client_cpu = sum(c for _, c, _ in results)
        server_cpu = sum(s for _, _, s in results)
        for p in procs:
            p.join()
        assert len(claimed) == args.items == len(set(claimed)), "an item was claimed twice or lost"
        backend = store.engine.dialect.name
        store.close()
    server = f", server backends {1000 * server_cpu / args.items:.1f} ms" if backend == "postgresql" else ""
    print(f"{backend}: {args.items} items, {args.claimers} claimer processes, {wall:.1f} s, "
          f"{args.items / wall:.1f} claims/s (claim + mark done), no item claimed twice; "
          f"CPU per claim: claimers {1000 * client_cpu / args.items:.1f} ms{server}")


if __name__ == "__main__":
    main()
