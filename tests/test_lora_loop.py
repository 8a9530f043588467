"""The loop's in-weight path for the embedded model (EVOLVE_LOOP__FINETUNE=local): the update
phase names the trained adapter in the candidate, and the adapter reaches the model layer."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.errors import ConfigError
from agent.loop.runtime import make_runtime
from agent.loop.update import update
from agent.model import adapters
from agent.model.llm import make_model
from agent.policy import ensure_initial, spec_of
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store
from tests.fakes import ScriptedModel


def _runtime(tmp_path, **loop):
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "finetune": "local", **loop})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    return make_runtime(settings, suite="arith", model=ScriptedModel([]), store=store)


def test_local_finetune_puts_the_adapter_in_a_new_candidate(tmp_path, monkeypatch):
    rt = _runtime(tmp_path)
    ref = "sha256:" + "ab" * 32
    calls = []
    monkeypatch.setattr(adapters, "finetune_local", lambda settings, store: calls.append(store) or ref)
    incumbent = ensure_initial(rt.store)
    out = update(rt, cycle=1, incumbent=incumbent)
    assert calls == [rt.store]
    assert out["adapter"] == ref and out["changed"]
    assert spec_of(rt.store.get_policy(out["candidate_id"])).adapter == ref
    assert spec_of(incumbent).adapter == ""


def test_too_few_verified_examples_trains_nothing(tmp_path):
    pytest.importorskip("torch")
    rt = _runtime(tmp_path, finetune_min_rows=5)
    rt.store.upsert_tasks([Task(id="arith/train/1", suite="arith", split="train", question="1+1?", answer="2")])
    rt.store.add_episode(Episode(run_key="k", task_id="arith/train/1", split="train", policy_id="p",
                                 model_fingerprint="f", verdict="pass", final_answer="The answer is 2."))
    assert adapters.finetune_local(rt.settings, rt.store) == ""
    assert not (rt.settings.home / "train").exists()


def test_local_finetune_refuses_a_remote_backend(tmp_path):
    pytest.importorskip("torch")
    settings = Settings(home=tmp_path / "home", model={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
                        loop={"finetune": "local"})
    with pytest.raises(ConfigError, match="EVOLVE_MODEL__BACKEND=embedded"):
        adapters.finetune_local(settings, store=None)


def test_an_adapter_policy_needs_the_embedded_backend(tmp_path):
    settings = Settings(home=tmp_path / "home", model={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(ConfigError, match="EVOLVE_MODEL__BACKEND=embedded"):
        make_model(settings, adapter="sha256:" + "0" * 64)


def test_a_missing_adapter_is_named_before_any_model_loads(tmp_path):
    settings = Settings(home=tmp_path / "home", model={"model": "smollm2-135m"})
    with pytest.raises(ConfigError, match="not in"):
        make_model(settings, adapter="sha256:" + "0" * 64)
