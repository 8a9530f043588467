"""scripts/bootstrap.sh in CI: a bubblewrap or tmux it cannot install fails the set-up (issue 16)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_path(tmp_path: Path) -> str:
    """A PATH with the shell tools the script needs but no bwrap, tmux, sudo or apt-get, and an
    `id` that says we are not root, so nothing can be installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "dirname", "cat", "sha256sum", "cut", "printf"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize(("ci", "fails"), [("true", True), ("", False)])
def test_missing_sandbox_tool_fails_setup_only_in_ci(tmp_path: Path, ci: str, fails: bool) -> None:
    env = {"PATH": _fake_path(tmp_path), "HOME": str(tmp_path), "CI": ci, "PYTHON": sys.executable}
    work = tmp_path / "repo"
    (work / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", work / "scripts" / "bootstrap.sh")
    # Stop right after the system-tool step when it does not fail: no venv is built here.
    (work / ".venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, work / ".venv" / "bin" / "python")
    (work / "pyproject.toml").write_text("")
    want = subprocess.run(["bash", "-c", "cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1"],
                          cwd=work, capture_output=True, text=True, env=env).stdout.strip()
    (work / ".venv" / ".evolve-installed").write_text(want + "\n")
    done = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=60)
    if fails:
        assert done.returncode != 0 and "CI=true" in done.stderr and "bubblewrap" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert "missing system packages" in done.stderr


@pytest.mark.parametrize(
    ("ci", "allow", "outcome"),
    [("true", "1", "failed"), ("true", "", "failed"), ("", "", "failed"), ("", "1", "skipped")],
)
def test_security_tests_skip_only_on_request_outside_ci(monkeypatch, ci, allow, outcome) -> None:
    from tests.security_env import SKIP_VARIABLE, missing

    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv(SKIP_VARIABLE, allow)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as info:
        missing("bubblewrap is not installed")
    got = "skipped" if info.errisinstance(pytest.skip.Exception) else "failed"
    assert got == outcome
    if got == "failed":
        assert SKIP_VARIABLE in str(info.value)
