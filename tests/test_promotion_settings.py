"""The gate's settings `significance` and `min_delta` decide promotion through the whole loop.

With the loop fake, cycle 1's candidate (worked examples) beats the incumbent on dev with a
McNemar p below 0.05 and a gain above 0: the default gate promotes it. A stricter
significance or a larger minimum gain must each turn it into a rejection.
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


@pytest.mark.parametrize("futility_stop", [False, True])  # the gate itself, and the early stop
@pytest.mark.parametrize("loop, decision", [
    ({}, "promote"),
    ({"significance": 1e-6}, "reject"),  # the same gain, not significant at this level
    ({"min_delta": 0.99}, "reject"),     # significant, but below the gain asked for
])
def test_significance_and_min_delta_decide(tmp_path, answers, loop, decision, futility_stop):
    ev = run(tmp_path, answers, futility_stop=futility_stop, **loop)
    assert ev["decision"] == decision
    if decision == "promote" or not futility_stop:
        # Without the early stop every row sees the same full evidence: only the thresholds
        # moved. (With it, a stricter row's dev run may stop once the threshold is out of reach.)
        assert 1e-6 < ev["p_value"] < 0.05 and 0 < ev["delta"] < 0.99
