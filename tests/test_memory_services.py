"""Without PostgreSQL or a Chroma server the multi-worker tests skip on a developer machine,
and fail under CI=true: CI never goes green without having run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.services import _missing

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("TRUE", pytest.fail.Exception),
                                         ("", pytest.skip.Exception), ("false", pytest.skip.Exception)])
def test_missing_servers_skip_locally_and_fail_in_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no PostgreSQL"):
        _missing("no PostgreSQL")


def test_services_script_refuses_bad_usage():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "restart", "/tmp/x"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage" in out.stderr
