"""PostgreSQL and a Chroma server for the tests of several workers on one store.

`services` (session scope) uses EVOLVE_TEST_PG_URL / EVOLVE_TEST_CHROMA_URL when set, else
starts both on loopback with scripts/services.sh (which installs PostgreSQL from the
distribution's packages when it can). When they cannot be had, the tests that need them skip
with the reason, except under CI=true, where they fail: CI must never go green without them.
Each test gets its own PostgreSQL database and its own Chroma database on those servers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Services:
    pg_url: str
    chroma_url: str


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: the multi-worker tests must run in CI", pytrace=False)
    pytest.skip(f"{reason} (scripts/services.sh starts both; CI=true makes this a failure)")


@pytest.fixture(scope="session")
def services():
    pg, chroma = os.environ.get("EVOLVE_TEST_PG_URL", ""), os.environ.get("EVOLVE_TEST_CHROMA_URL", "")
    workdir = None
    if not (pg and chroma):
        # Not under pytest's tmp dir: that is private to this user, and PostgreSQL runs as
        # another one when we are root.
        workdir = tempfile.mkdtemp(prefix="evolve-services-")
        os.chmod(workdir, 0o755)
        chroma_bin = Path(sys.executable).with_name("chroma")
        env = {**os.environ, "CHROMA_BIN": str(chroma_bin) if chroma_bin.exists() else (shutil.which("chroma") or "")}
        out = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "start", workdir],
                             capture_output=True, text=True, timeout=600, env=env)
        found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        pg = pg or found.get("EVOLVE_TEST_PG_URL", "")
        chroma = chroma or found.get("EVOLVE_TEST_CHROMA_URL", "")
        if not (pg and chroma):
            subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "stop", workdir], timeout=120)
            _missing(f"PostgreSQL or the Chroma server could not be started: {out.stderr.strip()[-500:]}")
    try:
        yield Services(pg_url=pg, chroma_url=chroma)
    finally:
        if workdir is not None:
            subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "stop", workdir], timeout=120)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_url(services):
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(services.pg_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def chroma_url(services):
    """A Chroma database of its own on the shared server (created on first use)."""
    return f"{services.chroma_url}/t-{uuid.uuid4().hex[:12]}"
