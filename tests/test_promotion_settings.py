"""The gate's settings `significance` and `min_delta` decide promotion through the whole loop.

With the loop fake, cycle 1's candidate (worked examples) beats the incumbent on dev with a
McNemar p well below 0.05 and a gain well above 0: the default gate promotes it. A stricter
significance or a larger minimum gain must each turn that same evidence into a rejection.
"""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.loop.graph import run_improve
from memory.embeddings import HashEmbedder
from memory.store import Store
from tests.loop_fakes import answers_by_question, loop_model


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def run(tmp_path, answers, **loop):
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 6, "dev_size": 12,
                                                        "patience": 0, "exemplars_k": 2, **loop})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    summary = run_improve(settings, cycles=1, model=loop_model(answers), store=store, run_id="r-gate")
    return summary["history"][0]["evaluate"]


@pytest.mark.parametrize("loop, decision", [
    ({}, "promote"),
    ({"significance": 1e-6}, "reject"),  # the same gain, not significant at this level
    ({"min_delta": 0.99}, "reject"),     # significant, but below the gain asked for
])
def test_significance_and_min_delta_decide(tmp_path, answers, loop, decision):
    ev = run(tmp_path, answers, **loop)
    assert ev["decision"] == decision
    # The evidence is the same in every row: only the thresholds moved.
    assert ev["p_value"] < 0.05 and 1e-6 < ev["p_value"]
    assert 0 < ev["delta"] < 0.99
