"""memory/ is the only place with SQL, and its modules stay small enough to read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A session, a query builder or an ORM import outside memory/ is SQL leaking out of it.
FORBIDDEN = [
    (re.compile(r"\.session\("), "a store session"),
    (re.compile(r"\bselect\("), "a select query"),
    (re.compile(r"^\s*(from|import)\s+sqlalchemy\b", re.M), "a sqlalchemy import"),
    (re.compile(r"^\s*(from|import)\s+sqlmodel\b", re.M), "a sqlmodel import"),
]


def _sql_in(text: str) -> list[str]:
    return [what for pattern, what in FORBIDDEN if pattern.search(text)]


def test_no_sql_under_agent():
    found = {str(p.relative_to(ROOT)): _sql_in(p.read_text(encoding="utf-8"))
             for p in sorted((ROOT / "agent").rglob("*.py"))}
    assert {path: what for path, what in found.items() if what} == {}


@pytest.mark.parametrize("snippet", [
    "    with store.session() as s:\n",
    "rows = s.exec(select(QueueItem)).all()\n",
    "from sqlalchemy import func\n",
    "    from sqlmodel import select\n",
    "import sqlmodel\n",
])
def test_the_check_catches_sql(snippet):
    assert _sql_in(f"x = 1\n{snippet}")


def test_memory_modules_stay_small():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "memory").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
