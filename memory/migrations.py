"""Schema versions as named, ordered steps.

A new database gets the current tables from the models and is stamped with the latest version;
an existing one runs, in order, each step above its recorded version. Each step and its version
bump commit together (SQLite and Postgres both have transactional DDL), so a process killed
mid-upgrade leaves the previous version, and the next open runs the step again. A database
with evolve's tables but no version table predates versioning and is version 1.

To change the schema: change memory/models.py, append a step here that brings a database of
the previous version to the new one, and store a database of the previous version under
tests/fixtures/ for the upgrade test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from filelock import FileLock
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

import memory.models  # noqa: F401  (registers the tables on SQLModel.metadata)

_meta = MetaData()
schema_version = Table(
    "evolve_schema_version",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _has_column(conn: Connection, table: str, column: str) -> bool:
    return any(c["name"] == column for c in inspect(conn).get_columns(table))


def _has_index(conn: Connection, table: str, name: str) -> bool:
    return any(i["name"] == name for i in inspect(conn).get_indexes(table))


def _v1_initial(conn: Connection) -> None:
    # Only reached by a database that has no evolve tables at all; see `upgrade`.
    SQLModel.metadata.create_all(conn)


def _v2_experience_vectors_and_usage(conn: Connection) -> None:
    # Vectors live in the database so the Chroma index is rebuilt without re-embedding.
    if not _has_column(conn, "experience", "embedding"):
        conn.execute(text("ALTER TABLE experience ADD COLUMN embedding BLOB" if conn.dialect.name == "sqlite"
                          else "ALTER TABLE experience ADD COLUMN embedding BYTEA"))
    if not _has_column(conn, "experience", "embedding_model"):
        conn.execute(text("ALTER TABLE experience ADD COLUMN embedding_model VARCHAR NOT NULL DEFAULT ''"))
    if not _has_index(conn, "experience", "ix_experience_pool"):
        conn.execute(text("CREATE INDEX ix_experience_pool ON experience (kind, split, trust, active)"))
    # The usage table is new in v2: create_all creates only what is missing.
    SQLModel.metadata.tables["experienceusage"].create(conn, checkfirst=True)
    for index in SQLModel.metadata.tables["experienceusage"].indexes:
        if not _has_index(conn, "experienceusage", index.name):
            index.create(conn)


def _v3_typed_trajectories(conn: Connection) -> None:
    # Episodes stored before memory/trajectory.py hold dicts keyed by "type" (or "role"):
    # rewrite each as typed steps so every reader sees one shape.
    import json

    from memory.trajectory import is_legacy, upgrade_legacy

    episode = SQLModel.metadata.tables["episode"]
    rows = conn.execute(episode.select().with_only_columns(episode.c.id, episode.c.trajectory)).all()
    for episode_id, items in rows:
        if isinstance(items, (str, bytes)):
            items = json.loads(items)
        if isinstance(items, list) and is_legacy(items):
            conn.execute(episode.update().where(episode.c.id == episode_id)
                         .values(trajectory=upgrade_legacy(items)))


def _v4_queue_leases(conn: Connection) -> None:
    # Several workers on one queue: a running item names its worker and its lease's end.
    if not _has_column(conn, "queueitem", "worker"):
        conn.execute(text("ALTER TABLE queueitem ADD COLUMN worker VARCHAR NOT NULL DEFAULT ''"))
    if not _has_column(conn, "queueitem", "lease_until"):
        conn.execute(text("ALTER TABLE queueitem ADD COLUMN lease_until "
                          + ("DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE")))
    if not _has_column(conn, "queueitem", "claims"):
        conn.execute(text("ALTER TABLE queueitem ADD COLUMN claims INTEGER NOT NULL DEFAULT 0"))
    if not _has_index(conn, "queueitem", "ix_queueitem_lease_until"):
        conn.execute(text("CREATE INDEX ix_queueitem_lease_until ON queueitem (lease_until)"))


STEPS: list[Step] = [
    Step(1, "initial", _v1_initial),
    Step(2, "experience_vectors_and_usage", _v2_experience_vectors_and_usage),
    Step(3, "typed_trajectories", _v3_typed_trajectories),
    Step(4, "queue_leases", _v4_queue_leases),
]
LATEST = STEPS[-1].version


def current_version(conn: Connection) -> int:
    """0 for an empty database, 1 for an unversioned database with evolve's tables."""
    names = set(inspect(conn).get_table_names())
    if schema_version.name in names:
        row = conn.execute(text(f"SELECT MAX(version) FROM {schema_version.name}")).scalar()
        return int(row or 0)
    return 1 if "experience" in names else 0


def _stamp(conn: Connection, step: Step) -> None:
    conn.execute(schema_version.insert().values(version=step.version, name=step.name,
                                                applied_at=datetime.now(timezone.utc)))


def upgrade(engine: Engine, *, lock_dir: Path | None = None) -> int:
    """Bring the database to LATEST; returns the version it was at before."""
    lock = FileLock(str(Path(lock_dir) / "migrate.lock"), timeout=600) if lock_dir else None
    if lock is not None:
        lock.acquire()
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return _upgrade_locked(conn)
            # Workers on other machines may share a Postgres database: a file lock cannot
            # serialise them, a session-level advisory lock can.
            conn.execute(text("SELECT pg_advisory_lock(7415092301)"))
            conn.commit()
            try:
                return _upgrade_locked(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7415092301)"))
                conn.commit()
    finally:
        if lock is not None:
            lock.release()


def _upgrade_locked(conn: Connection) -> int:
    start = current_version(conn)
    if conn.in_transaction():
        conn.commit()
    if start > LATEST:
        from memory.errors import StoreConfigError as ConfigError

        raise ConfigError(
            f"the database is at schema version {start}, newer than this evolve ({LATEST}); "
            "upgrade evolve or point database_url at another database"
        )
    if start == 0:
        with conn.begin():
            SQLModel.metadata.create_all(conn)
            _meta.create_all(conn)
            for step in STEPS:
                _stamp(conn, step)
        return 0
    for step in STEPS:
        if step.version <= start:
            continue
        with conn.begin():
            _meta.create_all(conn)
            if not conn.execute(text(f"SELECT 1 FROM {schema_version.name} WHERE version = 1")).first():
                # A pre-versioning database also lacks the record of its own version 1.
                _stamp(conn, STEPS[0])
            step.apply(conn)
            _stamp(conn, step)
    return start
