"""`evolve eval` without --limit on a large split says how many items and how long before it
starts (it used to start all 1,319 GSM8K test items silently)."""

from __future__ import annotations

from agent.cli.evaluate import LARGE_SPLIT, eta_line, seconds_per_item
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store


def test_eta_line_names_size_and_estimate():
    line = eta_line(1319, 2, 4.0, "gsm8k", "test")
    assert "all 1319 gsm8k test items × 2 policies" in line and "about 176 min" in line and "--limit" in line
    assert "no estimate" in eta_line(1319, 1, None, "gsm8k", "test")
    assert LARGE_SPLIT < 1319


def test_seconds_per_item_comes_from_this_models_held_out_episodes(settings):
    store = Store(settings, embedder=HashEmbedder())
    store.upsert_tasks([Task(id="arith/dev/1", suite="arith", split="dev", question="q", answer="1")])
    for i, (fp, secs) in enumerate([("m1", 2.0), ("m1", 4.0), ("m2", 100.0)]):
        store.add_episode(Episode(run_key=f"k{i}", task_id="arith/dev/1", split="dev", policy_id="p",
                                  model_fingerprint=fp, source="eval", latency_s=secs))
    assert seconds_per_item(store, "m1") == 3.0
    assert seconds_per_item(store, "m3") is None
