"""The Chroma index of experiences: derived from the database, rebuildable, one writer at a time.

Layout. One collection per (kind, split, trust), named `exp-<kind>-<split>-<trust>`, holding
only active experiences, ids = Experience.id. The agent's real retrieval (active, train,
verified, one kind) is then an unfiltered nearest-neighbour query on one collection: Chroma
answers those from HNSW in milliseconds at 100k vectors, while a metadata-filtered query scans
and takes hundreds (docs/benchmarks.md). Nothing is stored in Chroma but ids and vectors.

Several processes. An embedded `PersistentClient` keeps the HNSW graph in memory; a process
writing from a stale copy can damage what another wrote. So:
- every write happens under one file lock (`<locks_dir>/chroma-index.lock`);
- every write bumps a generation file next to the index; a process that sees a generation it
  did not write reopens its client before reading or writing, so it never works from a stale
  graph. Readers take no lock and keep working while a writer writes.
With a Chroma server (`memory.chroma_url`) the server owns the graph; the lock still keeps this
machine's writers in order.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
from filelock import FileLock

from memory.models import EXPERIENCE_KINDS, SPLITS, TRUST_LEVELS

PREFIX = "exp"
LOCK_TIMEOUT_S = 600.0
READ_RETRIES = 7  # about 3 s of backoff in all


def bucket_name(kind: str, split: str, trust: str) -> str:
    if kind not in EXPERIENCE_KINDS or split not in SPLITS or trust not in TRUST_LEVELS:
        raise ValueError(f"no index bucket for kind={kind!r} split={split!r} trust={trust!r}")
    return f"{PREFIX}-{kind}-{split}-{trust}"


def parse_bucket(name: str) -> tuple[str, str, str] | None:
    parts = name.split("-")
    if len(parts) == 4 and parts[0] == PREFIX:
        return parts[1], parts[2], parts[3]
    return None


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def _ensure_database(host: str, port: int, ssl: bool, name: str) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    admin = chromadb.AdminClient(ChromaSettings(anonymized_telemetry=False, chroma_api_impl="chromadb.api.fastapi.FastAPI",
                                                chroma_server_host=host, chroma_server_http_port=port,
                                                chroma_server_ssl_enabled=ssl))
    try:
        admin.get_database(name)
    except Exception:  # NotFoundError; another process may create it between these two calls
        try:
            admin.create_database(name)
        except Exception:
            admin.get_database(name)  # raises if it truly cannot be had


class ExperienceIndex:
    def __init__(self, settings, *, embedder_id: Callable[[], str], dim: Callable[[], int],
                 embedding_function=None) -> None:
        # The embedder's identity is asked for only when a collection is created or checked,
        # so reading counts does not load a model.
        settings.ensure_dirs()
        self._embedder_id = embedder_id
        self._dim = dim
        self._ef = embedding_function
        self._url = settings.memory.chroma_url
        self._path = Path(settings.chroma_dir)
        self._lock = FileLock(str(Path(settings.locks_dir) / "chroma-index.lock"), timeout=LOCK_TIMEOUT_S)
        self._gen_path = self._path / "evolve-generation"
        self._mutex = threading.RLock()
        self._client = None
        self._cols: dict[str, object] = {}
        self._seen_gen: tuple[int, int] | None = None

    @property
    def embedder_id(self) -> str:
        return self._embedder_id()

    @property
    def dim(self) -> int:
        return int(self._dim())

    # -- clients --------------------------------------------------------------------------

    @property
    def remote(self) -> bool:
        return bool(self._url)

    def _open(self):
        import chromadb

        if self._url:
            u = urlparse(self._url)
            host, port = u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 8000)
            # A path names a Chroma database on the server (http://host:port/<name>), so several
            # evolve stores can share one server; it is created on first use.
            database = u.path.strip("/")
            if database:
                _ensure_database(host, port, u.scheme == "https", database)
                return chromadb.HttpClient(host=host, port=port, ssl=u.scheme == "https", database=database,
                                           settings=_chroma_settings())
            return chromadb.HttpClient(host=host, port=port, ssl=u.scheme == "https", settings=_chroma_settings())
        self._path.mkdir(parents=True, exist_ok=True)
        if (self._path / "chroma.sqlite3").exists():
            from chromadb.errors import ChromaError

            try:
                return chromadb.PersistentClient(path=str(self._path), settings=_chroma_settings())
            except ChromaError as exc:
                from memory.errors import IntegrityError

                # The index is derived from the database, so the cure is to rebuild it.
                raise IntegrityError(f"the Chroma index {self._path} is damaged ({exc}); delete that directory "
                                     f"and run `evolve memory reindex` to rebuild it from the database") from None
        # The first open creates Chroma's schema. Two processes doing it at once made one fail
        # with "table collections already exists" (seen under load), so creation takes the
        # writer lock; later opens only read and stay lock-free for readers.
        with self._lock:
            return chromadb.PersistentClient(path=str(self._path), settings=_chroma_settings())

    def _generation(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._gen_path)
        except FileNotFoundError:
            return None
        # os.replace gives each new generation a new inode, so (inode, mtime) changes even
        # when two writes land within the filesystem's timestamp resolution.
        return (st.st_ino, st.st_mtime_ns)

    def _bump_generation(self) -> None:
        if self.remote:
            return
        tmp = self._gen_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(f"{os.getpid()} {os.times().elapsed}\n")
        os.replace(tmp, self._gen_path)
        self._seen_gen = self._generation()

    def _client_fresh(self):
        """The client, reopened when another process has written since we last looked."""
        with self._mutex:
            gen = None if self.remote else self._generation()
            if self._client is not None and gen != self._seen_gen:
                self._close_client()
            if self._client is None:
                self._client = self._open()
                self._seen_gen = gen
            return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        self._cols.clear()
        if client is None:
            return
        try:
            client.close()
        except Exception:
            pass
        if not self.remote:
            # Chroma shares one in-memory system per path within a process; close() keeps it
            # while other handles exist, and then a "new" client would see the stale graph.
            from chromadb.api.shared_system_client import SharedSystemClient

            cache = getattr(SharedSystemClient, "_identifier_to_system", {})
            for ident in [k for k in cache if str(self._path) in k]:
                system = cache.pop(ident, None)
                try:
                    system.stop()
                except Exception:
                    pass

    def close(self) -> None:
        with self._mutex:
            self._close_client()

    def _collection(self, name: str, create: bool):
        client = self._client_fresh()
        col = self._cols.get(name)
        if col is not None:
            return col
        if create:
            kwargs = {"configuration": {"hnsw": {"space": "cosine"}},
                      "metadata": {"embedder": self.embedder_id, "dim": self.dim}}
            col = client.get_or_create_collection(name, embedding_function=self._ef, **kwargs)
        else:
            try:
                col = client.get_collection(name, embedding_function=self._ef)
            except Exception:  # chromadb raises NotFoundError or ValueError depending on backend
                return None
        self._cols[name] = col
        return col

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the cross-process writer lock; reentrant within this process."""
        with self._lock, self._mutex:
            self._client_fresh()
            yield

    def upsert(self, bucket: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of {self.dim} dims, got {vectors.shape}")
        with self.writing():
            col = self._collection(bucket, create=True)
            step = max(1, min(5000, self._client.get_max_batch_size()))
            for start in range(0, len(ids), step):
                chunk = [str(i) for i in ids[start : start + step]]
                col.upsert(ids=chunk, embeddings=vectors[start : start + step])
            self._bump_generation()

    def delete(self, bucket: str, ids: Iterable[int]) -> None:
        ids = [str(i) for i in ids]
        if not ids:
            return
        with self.writing():
            col = self._collection(bucket, create=False)
            if col is not None:
                col.delete(ids=ids)
                self._bump_generation()

    def drop_all(self) -> None:
        with self.writing():
            for name in self.bucket_names():
                self._client.delete_collection(name)
            self._cols.clear()
            self._bump_generation()

    # -- reading --------------------------------------------------------------------------

    def bucket_names(self) -> list[str]:
        client = self._client_fresh()
        names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
        return sorted(n for n in names if parse_bucket(n) is not None)

    def count(self, bucket: str) -> int:
        col = self._collection(bucket, create=False)
        return 0 if col is None else int(col.count())

    def counts(self) -> dict[str, int]:
        return {name: self.count(name) for name in self.bucket_names()}

    def contains(self, bucket: str, ids: Sequence[int]) -> set[int]:
        col = self._collection(bucket, create=False)
        if col is None or not ids:
            return set()
        got = col.get(ids=[str(i) for i in ids], include=[])
        return {int(i) for i in got["ids"]}

    def all_ids(self, bucket: str, page: int = 10_000) -> set[int]:
        col = self._collection(bucket, create=False)
        out: set[int] = set()
        if col is None:
            return out
        offset = 0
        while True:
            got = col.get(include=[], limit=page, offset=offset)
            out.update(int(i) for i in got["ids"])
            if len(got["ids"]) < page:
                return out
            offset += page

    def embedder_of(self, bucket: str) -> str | None:
        col = self._collection(bucket, create=False)
        return None if col is None else (col.metadata or {}).get("embedder")

    def query(self, buckets: Sequence[str], vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """The n nearest ids over the given buckets, as (id, cosine similarity), best first."""
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        hits: list[tuple[int, float]] = []
        for name in buckets:
            res = self._query_one(name, vector, n)
            if res is not None:
                hits.extend((int(i), 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0]))
        hits.sort(key=lambda h: -h[1])
        return hits[:n]

    def _query_one(self, name: str, vector: np.ndarray, n: int):
        from chromadb.errors import ChromaError

        for attempt in range(READ_RETRIES):
            try:
                col = self._collection(name, create=False)
                if col is None:
                    return None
                # No count() first: Chroma (>= 1.5) answers a query for more results than the
                # collection holds, or on an empty one, with what there is, and on a server
                # each call is a round trip (the count doubled the latency of a retrieval).
                return col.query(query_embeddings=vector, n_results=n, include=["distances"])
            except ChromaError:
                # A reader can open a collection another process is still writing (its HNSW
                # files not yet on disk: "Nothing found on disk"). Reopen and look again once
                # the writer is done, rather than fail the agent's retrieval.
                if attempt == READ_RETRIES - 1:
                    raise
                with self._mutex:
                    self._close_client()
                time.sleep(0.05 * 2**attempt)
        return None

    # -- consistency ----------------------------------------------------------------------

    def reconcile(self, bucket: str, expected: set[int], vectors_for: Callable[[list[int]], np.ndarray]) -> tuple[int, int]:
        """Make `bucket` hold exactly `expected`; returns (added, removed)."""
        with self.writing():
            present = self.all_ids(bucket)
            missing = sorted(expected - present)
            extra = sorted(present - expected)
            if extra:
                self.delete(bucket, extra)
            for start in range(0, len(missing), 5000):
                chunk = missing[start : start + 5000]
                self.upsert(bucket, chunk, vectors_for(chunk))
            return len(missing), len(extra)
