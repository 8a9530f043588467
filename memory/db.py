"""Database engine and sessions. SQLite (WAL) by default, any SQLAlchemy URL by configuration.

SQLite with several processes: WAL lets readers run during a write, `busy_timeout` makes a
writer wait for another instead of failing, and write transactions start with
`BEGIN IMMEDIATE`. The last matters: a deferred transaction that reads and then writes can
fail at once with SQLITE_BUSY when another process committed in between (the busy handler
cannot help a reader that must upgrade), while an immediate one takes the write lock first
and simply waits its turn.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session, create_engine

from memory import migrations

BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "evolve_read_only"
# A server connection used this recently is not pinged before reuse (see _ping_when_idle).
IDLE_PING_S = 10.0


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(settings, *, migrate: bool = True) -> Engine:
    """An engine for `settings.database_url`, migrated to the current schema."""
    settings.ensure_dirs()
    url = settings.database_url
    if _is_sqlite(url):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        _configure_sqlite(engine)
    else:
        engine = create_engine(url)
        _ping_when_idle(engine)
    if migrate:
        from sqlalchemy.exc import DatabaseError

        from memory.errors import IntegrityError

        try:
            migrations.upgrade(engine, lock_dir=settings.locks_dir)
        except DatabaseError as exc:
            # A file that is not a database (or is damaged) is corruption, not a bug to trace.
            raise IntegrityError(f"the database {make_url(url).render_as_string(hide_password=True)} cannot be "
                                 f"read ({getattr(exc, 'orig', exc)}); restore it from a backup or move it "
                                 f"away to start empty") from None
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled server connection before reuse only when it sat idle for a while.

    `pool_pre_ping` pings on every checkout: a worker task opens about twenty sessions, so
    that was a fifth of its round trips to PostgreSQL, and on a loaded machine each round trip
    waits for the server to be scheduled. A connection used in the last IDLE_PING_S seconds
    was just proven alive by that use; an older one is pinged, and replaced if it is dead (a
    restarted server), as pre-ping would."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        record.info["evolve_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        used = record.info.get("evolve_used")
        if used is None or time.monotonic() - used < IDLE_PING_S:
            return  # just connected, or just used
        try:
            engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()  # the ping opened a transaction; the session starts its own
        except Exception as exc:
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take transaction control away from the sqlite3 module so `begin` below decides.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable against process crashes in WAL mode; only an OS crash can lose
        # the last transactions, never corrupt the file.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """A session committed on success and rolled back on error.

    `read_only=True` starts a deferred transaction that does not take SQLite's write lock, so
    reads never wait behind another process's writes. On a server it runs in autocommit: no
    BEGIN and COMMIT round trips, and under READ COMMITTED (PostgreSQL's default) every
    statement took its own snapshot anyway, so reads see exactly what they saw before."""
    if not read_only:
        bind = engine
    elif engine.dialect.name == "sqlite":
        bind = engine.execution_options(**{_READ_ONLY: True})
    else:
        bind = engine.execution_options(isolation_level="AUTOCOMMIT", **{_READ_ONLY: True})
    session = Session(bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
