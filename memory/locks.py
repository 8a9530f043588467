"""Locks held in the database, for processes on several machines sharing one PostgreSQL store.

A file lock serialises processes on one machine only. On PostgreSQL a session-level advisory
lock, held on a connection of its own for as long as the block runs, serialises every process
that reaches the server; if its holder dies, the server drops the connection and the lock with
it, so no lock is ever left stale. SQLite stores are single-machine: there the caller's file
lock is the whole story and `database_lock` returns None.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(f"evolve:{name}".encode()).digest()[:8], "big", signed=True)


class DatabaseLock:
    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.key = lock_key(name)
        self._engine = create_engine(url, poolclass=NullPool)
        self._conn = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False at once if another session holds it."""
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        finally:
            conn.close()  # closing the session releases it in any case

    def close(self) -> None:
        self.release()
        self._engine.dispose()


def database_lock(url: str, name: str) -> DatabaseLock | None:
    """A lock shared by every process on the database at `url`, or None when the database is
    not a server (SQLite) and a local file lock is enough."""
    if not url or make_url(url).get_backend_name() != "postgresql":
        return None
    return DatabaseLock(url, name)
