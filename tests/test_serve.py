"""`evolve serve` checks its settings before loading anything (no model runs here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.serve import client_env, server_plan
from agent.config import ConfigError, Settings
from agent.model.local_model import PRESETS

REPO = Path(__file__).resolve().parents[1]


def _settings(tmp_path, **model) -> Settings:
    s = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache", model={"model": "smollm2-135m", **model})
    s.ensure_dirs()
    return s


def test_plan_serves_the_verified_preset_under_its_own_name(tmp_path):
    plan = server_plan(_settings(tmp_path), host="127.0.0.1", port=8011, lora=None)
    assert plan["alias"] == "smollm2-135m" and plan["sha256"] == PRESETS["smollm2-135m"].sha256
    assert plan["api_key"] is None and plan["threads"] >= 1
    assert client_env(plan) == ("EVOLVE_MODEL__BACKEND=openai EVOLVE_MODEL__BASE_URL=http://127.0.0.1:8011/v1 "
                                "EVOLVE_MODEL__MODEL=smollm2-135m")


@pytest.mark.parametrize(("host", "key", "ok"), [
    ("127.0.0.1", "", True),
    ("localhost", "", True),
    ("::1", "", True),
    ("0.0.0.0", "", False),  # every interface, nobody asked for a key
    ("192.168.1.20", "", False),
    ("0.0.0.0", "s3cret", True),
])
def test_beyond_loopback_needs_an_api_key(tmp_path, host, key, ok):
    settings = _settings(tmp_path, api_key=key)
    if ok:
        assert server_plan(settings, host=host, port=1, lora=None)["api_key"] == (key or None)
    else:
        with pytest.raises(ConfigError, match="EVOLVE_MODEL__API_KEY"):
            server_plan(settings, host=host, port=1, lora=None)


def test_a_client_configuration_is_refused(tmp_path):
    settings = _settings(tmp_path, backend="openai", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="embedded"):
        server_plan(settings, host="127.0.0.1", port=1, lora=None)


def test_missing_adapter_is_named(tmp_path):
    with pytest.raises(ConfigError, match="--lora"):
        server_plan(_settings(tmp_path), host="127.0.0.1", port=1, lora=tmp_path / "none.gguf")


def test_tampered_weights_are_refused_before_serving(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    settings = _settings(tmp_path, model=str(bad), sha256="0" * 64)
    from agent.errors import IntegrityError

    with pytest.raises(IntegrityError, match="SHA-256"):
        server_plan(settings, host="127.0.0.1", port=1, lora=None)


def test_cli_refuses_an_open_bind_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVOLVE_HOME": str(tmp_path / "home"),
           "EVOLVE_MODEL__MODEL": "smollm2-135m"}
    env.pop("EVOLVE_MODEL__API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "serve", "--host", "0.0.0.0"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "EVOLVE_MODEL__API_KEY" in proc.stderr
