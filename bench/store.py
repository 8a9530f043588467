"""Experience store benchmark: insert throughput and retrieval latency at 10k and 100k.

    python bench/store.py                 # 10k and 100k, bucketed layout (what Store does)
    python bench/store.py --sizes 10000   # one size
    python bench/store.py --compare       # also one collection with metadata filters
    python bench/store.py --chroma-url http://127.0.0.1:8000   # the index on a Chroma server
    python bench/store.py --database-url postgresql+psycopg://...  # rows in PostgreSQL (empty db)

The vectors, stored and queried, are SYNTHETIC: random unit vectors around 2,000 topic
centres, of the dimension of the store's real embedder (all-MiniLM-L6-v2, 384), so the numbers
measure the store, not the embedder (embedding 100k texts with the real model would take this
machine longer than the rest of the bench). The real embedder's cost per query is measured
separately unless --no-model is given. Retrieval runs exactly the agent's path:
`Store.retrieve_by_vector` (active, train, verified, one kind; similarity then usefulness),
which includes the database fetch of the rows.

Loading: rows go into the database with batched Core inserts (5,000 a statement batch), then
the index is rebuilt from the stored vectors with `Store.reindex()` (the product's rebuild
path, which writes to Chroma in batches of the client's `get_max_batch_size()`); `load s` is
both together, wall clock.

The mix: 60% exemplars, 30% insights, 10% skills; 90% train; 90% verified; 3% inactive.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from agent.config import Settings  # noqa: E402
from memory.embeddings import MODEL_NAME, MiniLMEmbedder  # noqa: E402
from memory.models import Experience  # noqa: E402
from memory.store import Store, _vec_to_bytes, digest_of  # noqa: E402

DIM = MiniLMEmbedder.dim  # the real embedder's dimension, so Chroma does the same work per vector
BATCH = 5000


class FixedEmbedder:
    """Stands in for the model: ids only, vectors are supplied precomputed."""

    model_id = "bench-precomputed"
    dim = DIM

    def embed(self, texts):
        rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
        v = rng.normal(size=(len(texts), DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    v = centres[rng.integers(0, 2000, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000.0, p))


def bulk_load(store: Store, n: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Rows into the database in batches, then the index rebuilt from them.

    Returns (database rows/s, index rows/s, load seconds)."""
    vecs = vectors(n, rng)
    kinds = rng.choice(["exemplar", "insight", "skill"], n, p=[0.6, 0.3, 0.1])
    splits = rng.choice(["train", "dev", "test"], n, p=[0.9, 0.05, 0.05])
    trusts = rng.choice(["verified", "unverified", "untrusted"], n, p=[0.9, 0.05, 0.05])
    active = rng.random(n) > 0.03
    uses = rng.integers(0, 20, n)
    successes = [int(rng.integers(0, int(u) + 1)) for u in uses]
    # Every column's default (timestamps, JSON fields) from one model instance: constructing
    # 100k SQLModel instances costs more than inserting them (pydantic's default factories).
    template = Experience(kind="exemplar", content="", digest="").model_dump(exclude={"id"})
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        rows = []
        for i in range(start, min(n, start + BATCH)):
            content = f"experience {i}"
            rows.append({**template, "kind": str(kinds[i]), "content": content, "key": content,
                         "digest": digest_of(content), "split": str(splits[i]), "trust": str(trusts[i]),
                         "active": bool(active[i]), "source_task_ids": [f"bench/{splits[i]}/{i}"],
                         "uses": int(uses[i]), "successes": successes[i], "embedding": _vec_to_bytes(vecs[i]),
                         "embedding_model": FixedEmbedder.model_id})
        with store.session() as s:
            s.execute(insert(Experience.__table__), rows)
    db_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    indexed = store.reindex()
    idx_s = time.perf_counter() - t1
    return n / db_s, indexed / idx_s, time.perf_counter() - t0


def single_inserts(store: Store, m: int, rng: np.random.Generator) -> float:
    """`add_experience` one at a time: dedup check, commit, index write, as the agent does."""
    texts = [f"single insert {i} {rng.integers(1 << 30)}" for i in range(m)]
    t0 = time.perf_counter()
    for t in texts:
        store.add_experience("insight", t, split="train")
    return m / (time.perf_counter() - t0)


def retrieval(store: Store, queries: np.ndarray, k: int) -> list[float]:
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        got = store.retrieve_by_vector("exemplar", q, k)
        lat.append(time.perf_counter() - t0)
        assert len(got) == k
    return lat


def filtered_baseline(store: Store, queries: np.ndarray, k: int) -> list[float]:
    """The layout we did not choose: everything in one collection, filtered by metadata."""
    client = store.index._client_fresh()
    col = client.get_or_create_collection("bench-single", configuration={"hnsw": {"space": "cosine"}})
    if col.count() == 0:
        with store.session(read_only=True) as s:
            rows = s.exec(Experience.__table__.select().where(Experience.active == True)).all()  # noqa: E712
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            col.add(ids=[str(r.id) for r in chunk],
                    embeddings=np.vstack([np.frombuffer(r.embedding, dtype="<f4") for r in chunk]),
                    metadatas=[{"kind": r.kind, "split": r.split, "trust": r.trust} for r in chunk])
    where = {"$and": [{"kind": "exemplar"}, {"split": "train"}, {"trust": "verified"}]}
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        col.query(query_embeddings=q[None, :], n_results=k, where=where)
        lat.append(time.perf_counter() - t0)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--chroma-url", default="", help="a Chroma server; each size gets its own database on it")
    ap.add_argument("--database-url", default="", help="default: SQLite in a temp dir; one size per empty database")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"vectors: synthetic ({DIM} dims, random around 2,000 centres), not {MODEL_NAME} embeddings; "
          f"index: {args.chroma_url or 'embedded Chroma'}; database: {args.database_url or 'SQLite'}", flush=True)
    print(f"{'size':>7} {'bucket':>7} {'db rows/s':>10} {'index/s':>8} {'load s':>7} {'add/s':>6} "
          f"{'p50 ms':>7} {'p99 ms':>7}" + (f" {'filt p50':>8} {'filt p99':>8}" if args.compare else ""))
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            chroma = f"{args.chroma_url.rstrip('/')}/bench-{n}-{int(time.time())}" if args.chroma_url else ""
            settings = Settings(home=Path(tmp) / "home", cache_dir=Path(tmp) / "cache",
                                memory={"chroma_url": chroma}, **({"database_url": args.database_url}
                                                                   if args.database_url else {}))
            store = Store(settings, embedder=FixedEmbedder())
            db_rate, idx_rate, load_s = bulk_load(store, n, rng)
            bucket = store.index.count("exp-exemplar-train-verified")
            add_rate = single_inserts(store, 300, rng)
            queries = vectors(args.queries, rng)
            retrieval(store, queries[:20], args.k)  # warm the HNSW graph and the page cache
            lat = retrieval(store, queries, args.k)
            line = (f"{n:>7} {bucket:>7} {db_rate:>10.0f} {idx_rate:>8.0f} {load_s:>7.1f} {add_rate:>6.0f} "
                    f"{pct(lat, 50):>7.2f} {pct(lat, 99):>7.2f}")
            if args.compare:
                filtered_baseline(store, queries[:5], args.k)
                flat = filtered_baseline(store, queries[:60], args.k)
                line += f" {pct(flat, 50):>8.1f} {pct(flat, 99):>8.1f}"
            print(line, flush=True)
            store.close()
    if not args.no_model:
        with tempfile.TemporaryDirectory() as tmp:
            e = MiniLMEmbedder(tmp)
            e.embed(["warm up"])
            qs = [f"Natalia sold clips to {i} of her friends in April; how many in May?" for i in range(50)]
            lat = []
            for q in qs:
                t0 = time.perf_counter()
                e.embed([q])
                lat.append(time.perf_counter() - t0)
            docs = [" ".join(qs[i % 50].split() * (1 + i % 4)) for i in range(256)]
            t0 = time.perf_counter()
            e.embed(docs)
            rate = len(docs) / (time.perf_counter() - t0)
            print(f"{MODEL_NAME} (onnxruntime, real) query embedding: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms; "
                  f"documents (16-64 words, batched): {rate:.0f} texts/s")


if __name__ == "__main__":
    main()
