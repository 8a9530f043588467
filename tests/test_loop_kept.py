"""Behaviour kept through the typed-trajectory / one-attempt-path restructuring.

The numbers below were printed on main at 5f3a20b, before the change, by the scenario of
tests/test_loop.py (arith, 6 train tasks per cycle, 12 dev tasks, patience 2, exemplars_k 2,
HashEmbedder(64), run id "r-fixed") with the loop fake of that commit; the request-reading fake that replaced it
answers the same tasks rightly and wrongly, through tool calls, malformed replies and forced
answers instead of always "The answer is N" in the reasoning.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlmodel import select

from agent.config import Settings
from agent.loop.graph import run_improve
from memory.embeddings import HashEmbedder
from memory.models import Cycle, Episode, EvalResult
from memory.store import Store
from memory.trajectory import Trajectory
from tests.loop_fakes import answers_by_question, loop_model

RECORDED = {
    "patience": {"cycles": 5, "loop": {}, "decisions": ["promote", "reject", "reject"],
                 "episodes": {"acquire": 18, "eval": 48}, "passed": {"acquire": 16, "eval": 41},
                 "eval_results": 48, "incumbent_correct": [5, 12, 12],
                 "refine": [{"exemplar": 4, "corrected": 2, "add": 1, "agree": 1}, {"exemplar": 6}, {"exemplar": 4}]},
    "no_context": {"cycles": 1, "loop": {"exemplars_k": 0, "insights_max": 0}, "decisions": ["reject"],
                   "episodes": {"acquire": 6, "eval": 24}, "passed": {"acquire": 4, "eval": 10},
                   "eval_results": 24, "incumbent_correct": [5],
                   "refine": [{"exemplar": 4, "corrected": 2, "add": 1, "agree": 1}]},
}


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_decisions_and_episode_counts_match_the_recorded_run(tmp_path, answers, name):
    want = RECORDED[name]
    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 6, "dev_size": 12,
                                                        "patience": 2, "exemplars_k": 2, **want["loop"]})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    summary = run_improve(settings, cycles=want["cycles"], model=loop_model(answers), store=store, run_id="r-fixed")
    history = summary["history"]
    with store.session() as s:
        episodes = list(s.exec(select(Episode)))
        results = list(s.exec(select(EvalResult)))
        cycles = list(s.exec(select(Cycle)))
    assert [h["decision"] for h in history] == want["decisions"]
    assert dict(Counter(e.source for e in episodes)) == want["episodes"]
    assert dict(Counter(e.source for e in episodes if e.verdict == "pass")) == want["passed"]
    assert len(results) == want["eval_results"]
    assert [round(h["evaluate"]["incumbent_acc"] * 12) for h in history] == want["incumbent_correct"]
    assert [{k: v for k, v in h["refine"].items() if v} for h in history] == want["refine"]
    # The episodes went through every path of the solver, not only an answer in the reasoning.
    kinds = Counter(step.kind for e in episodes for step in Trajectory.from_stored(e.trajectory).steps)
    assert all(kinds[k] > 0 for k in ("thought", "action", "observation", "parse_error", "settled"))
    # Costs come from each call's own usage: the fake's clock gives every call a latency.
    assert summary["model_seconds"] > 0 and sum(c.model_seconds for c in cycles) == pytest.approx(summary["model_seconds"])
    assert sum(c.tokens for c in cycles) == summary["tokens"] > 0
