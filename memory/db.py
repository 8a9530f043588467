"""Database engine and sessions. SQLite (WAL) by default, any SQLAlchemy URL by configuration.

SQLite with several processes: WAL lets readers run during a write, `busy_timeout` makes a
writer wait for another instead of failing, and write transactions start with
`BEGIN IMMEDIATE`. The last matters: a deferred transaction that reads and then writes can
fail at once with SQLITE_BUSY when another process committed in between (the busy handler
cannot help a reader that must upgrade), while an immediate one takes the write lock first
and simply waits its turn.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from memory import migrations

BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "evolve_read_only"


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
        engine = create_engine(url, pool_pre_ping=True)
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
    reads never wait behind another process's writes."""
    bind = engine.execution_options(**{_READ_ONLY: True}) if read_only else engine
    session = Session(bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
