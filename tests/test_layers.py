"""The layer contract (pyproject.toml, [tool.importlinter]) holds: a wrong import fails the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return [exe, str(ROOT / "pyproject.toml"), "--no-cache"]


def test_import_contracts_hold() -> None:
    out = subprocess.run(_lint_imports(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_contract_catches_an_upward_import(tmp_path) -> None:
    # The checker must be able to fail: a copy of the tree with tools/ importing agent/ breaks it.
    for pkg in ("agent", "tools", "memory"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "tools" / "calculator.py"
    bad.write_text("from agent.config import Settings  # an upward import\n" + bad.read_text())
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(_lint_imports(), cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode != 0
    assert "tools.calculator -> agent.config" in out.stdout
