"""The multi-candidate cycle on the real embedded test model (SmolLM2-135M): the reflective
proposer's schema goes through llama.cpp's grammar, every candidate is recorded with its cost."""

from __future__ import annotations

import pytest
from sqlmodel import select

from agent.config import Settings
from agent.loop.graph import run_improve
from memory.embeddings import HashEmbedder
from memory.models import Promotion
from memory.store import Store

pytestmark = pytest.mark.integration


def test_one_multi_candidate_cycle_with_the_real_model(tmp_path):
    # One thread: with two, llama.cpp's threads wait on each other whenever another process
    # holds a core, and this test once ran past its 600 s timeout on a loaded machine (83 s alone).
    settings = Settings(home=tmp_path / "home", model={"model": "smollm2-135m", "n_threads": 1},
                        loop={"suite": "arith", "train_per_cycle": 1, "dev_size": 2, "patience": 1,
                              "candidates_per_cycle": 2, "screen_size": 1, "survivors": 1,
                              "proposers": ["instruction", "tools"], "max_tokens_per_task": 300})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    summary = run_improve(settings, cycles=1, store=store, run_id="search-integration")
    entry = summary["history"][0]
    proposed = entry["update"]["candidates"]
    assert proposed and proposed[-1]["proposer"] == "tools"
    with store.session() as s:
        rows = list(s.exec(select(Promotion)))
    assert sorted(r.candidate_id for r in rows) == sorted(c["candidate_id"] for c in proposed)
    assert sum(r.decision == "promote" for r in rows) <= 1
    for c in entry.get("evaluate", {}).get("candidates", []):
        assert c["cost"]["tokens"] > 0 and c["cost"]["seconds"] > 0 and "p_adjusted" in c
