"""Shared fixtures. Every test gets its own evolve home; real models load only when a test
is marked `integration`, so a unit test cannot reach a model by accident."""

from __future__ import annotations

import pytest

from agent.config import Settings


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, request):
    monkeypatch.setenv("EVOLVE_HOME", str(tmp_path / "home"))
    for var in ("EVOLVE_CONFIG", "OPENAI_API_KEY", "EVOLVE_MODEL__API_KEY", "EVOLVE_MODEL__BASE_URL",
                "EVOLVE_MODEL__BACKEND", "EVOLVE_MODEL__MODEL"):
        monkeypatch.delenv(var, raising=False)
    if request.node.get_closest_marker("integration") is None:
        import agent.model.local_model as lm

        def _blocked(*args, **kwargs):
            raise RuntimeError("unit tests may not load a real model: mark the test `integration`")

        monkeypatch.setattr(lm, "load_llama", _blocked)


@pytest.fixture
def settings(tmp_path) -> Settings:
    s = Settings(home=tmp_path / "home")
    s.ensure_dirs()
    return s


# PostgreSQL and Chroma server fixtures for the multi-worker tests (tests/services.py).
from tests.services import chroma_url, pg_url, services  # noqa: E402,F401
