"""`evolve serve` checks its settings before loading anything (no model runs here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.serve import client_env, server_plan
from agent.config import ConfigError, Settings
from agent.model.local_model import PRESETS, sha256_file

REPO = Path(__file__).resolve().parents[1]


def _settings(tmp_path, **model) -> Settings:
    s = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache", model={"model": "smollm2-135m", **model})
    s.ensure_dirs()
    return s


def test_plan_serves_the_verified_preset_under_its_own_name(tmp_path):
    plan = server_plan(_settings(tmp_path), host="127.0.0.1", port=8011, lora=None)
    sha = PRESETS["smollm2-135m"].sha256
    # The id clients send names the weights, so their recorded fingerprint does too.
    assert plan["alias"] == f"smollm2-135m@{sha[:16]}" and plan["sha256"] == sha
    assert plan["api_key"] is None and plan["threads"] >= 1
    assert client_env(plan) == ("EVOLVE_MODEL__BACKEND=openai EVOLVE_MODEL__BASE_URL=http://127.0.0.1:8011/v1 "
                                f"EVOLVE_MODEL__MODEL=smollm2-135m@{sha[:16]}")


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


def _smollm_adapter(settings, arch=None):
    import numpy as np

    lg = pytest.importorskip("agent.model.lora_gguf")
    from agent.model.local_model import resolve_weights

    base_path, _ = resolve_weights(settings.model, settings.models_dir)
    base = lg.read_base_info(base_path)
    out, inp = base.shapes["blk.0.attn_q.weight"]
    rng = np.random.default_rng(0)
    pair = (rng.normal(size=(2, inp)).astype(np.float32), rng.normal(size=(out, 2)).astype(np.float32))
    return lg.LoraAdapter(arch=arch or base.arch, alpha=16.0, pairs={"blk.0.attn_q.weight": pair})


# --lora: what is served must be an adapter for this base (llama.cpp segfaults on a misfit).
def test_an_adapter_file_is_checked_against_the_base(tmp_path):
    pytest.importorskip("gguf")
    from agent.model import lora_gguf as lg

    settings = _settings(tmp_path)
    good = lg.write_adapter(_smollm_adapter(settings), tmp_path / "good.gguf")
    plan = server_plan(settings, host="127.0.0.1", port=1, lora=str(good))
    assert plan["lora"] == str(good)
    # Base plus adapter is another model than the base alone, to the clients' fingerprints too.
    bare = server_plan(settings, host="127.0.0.1", port=1, lora=None)["alias"]
    assert plan["alias"] == f"{bare}+lora-{sha256_file(good)[:16]}"
    other = lg.write_adapter(_smollm_adapter(settings, arch="qwen2"), tmp_path / "other.gguf")
    with pytest.raises(ConfigError, match=r"--lora .*other.gguf does not fit"):
        server_plan(settings, host="127.0.0.1", port=1, lora=str(other))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ConfigError, match="does not fit"):
        server_plan(settings, host="127.0.0.1", port=1, lora=str(junk))


def test_a_stored_adapter_is_served_by_reference_and_hash_checked(tmp_path):
    pytest.importorskip("gguf")
    from agent.errors import IntegrityError
    from agent.model import adapters

    settings = _settings(tmp_path)
    ref = adapters.save_adapter(settings.home, _smollm_adapter(settings), {"example_ids": ["a"]})
    plan = server_plan(settings, host="127.0.0.1", port=1, lora=ref)
    assert plan["lora"] == str(adapters.adapters_dir(settings.home) / f"{ref[len('sha256:'):]}.gguf")
    # the client-side model id names the verified adapter, hashed once (resolve_adapter)
    assert plan["alias"].endswith(f"+lora-{ref[len('sha256:'):][:16]}")
    with open(plan["lora"], "ab") as f:
        f.write(b"\0")  # tampered after it was stored
    with pytest.raises(IntegrityError, match="SHA-256"):
        server_plan(settings, host="127.0.0.1", port=1, lora=ref)
    with pytest.raises(ConfigError, match="not in"):
        server_plan(settings, host="127.0.0.1", port=1, lora="sha256:" + "0" * 64)
