"""The HTML report from a store holding a few cycles of history (and from an empty one)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from agent.policy import PolicySpec, _make
from agent.loop.stats import wilson_interval as wilson
from agent.surfaces.report import load, ranked_experiences, render, write_report
from memory.embeddings import HashEmbedder
from memory.models import Cycle, Episode, EvalRun, Promotion, Task
from memory.store import Store

T0 = datetime(2025, 3, 1, 3, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder())
    yield st
    st.close()


def populate(store) -> dict:
    p1 = store.save_policy(_make(PolicySpec(), 1, None, "initial"))
    p2 = store.save_policy(_make(PolicySpec(insights=("Check units.",)), 2, p1.id, "c1"))
    p3 = store.save_policy(_make(PolicySpec(insights=("Check units.", "Re-read.")), 3, p2.id, "c2"))
    store.set_pointer("incumbent", p2.id)
    store.upsert_tasks([Task(id=f"arith/train/{i}", suite="arith", split="train", question=f"q{i}", answer="1")
                        for i in range(4)])
    accs = {(1, p1.id): 0.40, (1, p2.id): 0.60, (2, p2.id): 0.62, (2, p3.id): 0.58}
    for (cycle, pid), acc in accs.items():
        store.add(EvalRun(run_key=f"c{cycle}/{pid}", policy_id=pid, split="dev", cycle=cycle, accuracy=acc, n=50))
    store.add(Promotion(cycle=1, candidate_id=p2.id, incumbent_before=p1.id, incumbent_after=p2.id,
                        decision="promote", delta=0.2, ci_low=0.06, ci_high=0.34, p_value=0.004, n=50,
                        evidence={"run_id": "r1", "incumbent_acc": 0.40, "candidate_acc": 0.60}))
    store.add(Promotion(cycle=2, candidate_id=p3.id, incumbent_before=p2.id, incumbent_after=p2.id,
                        decision="reject", delta=-0.04, ci_low=-0.14, ci_high=0.06, p_value=0.6, n=50,
                        evidence={"run_id": "r1", "incumbent_acc": 0.62, "candidate_acc": 0.58}))
    store.add(Promotion(cycle=None, candidate_id=p1.id, incumbent_before=p2.id, incumbent_after=p1.id,
                        decision="rollback"))
    for n in (1, 2):
        store.add(Cycle(run_id="r1", number=n, status="done", tokens=1000 * n,
                        phase_seconds={"acquire": 30.0 * n, "refine": 5.0, "update": 1.0, "evaluate": 60.0}))
    for i in range(12):
        store.add_episode(Episode(run_key=f"e{i}", task_id=f"arith/train/{i % 4}", split="train", policy_id=p1.id,
                                  model_fingerprint="f", cycle=1 + i % 2, source="acquire" if i % 3 else "eval",
                                  prompt_tokens=100, completion_tokens=20, verdict="pass" if i % 2 else "fail",
                                  created_at=datetime.now(timezone.utc) - timedelta(hours=12 - i)))
    good = store.add_experience("insight", "Always write units <b>bold</b>", source_task_ids=["arith/train/0"])
    bad = store.add_experience("exemplar", "Question: <script>alert(1)</script> Solution: 2",
                               source_task_ids=["arith/train/1"])
    lucky = store.add_experience("insight", "A rule shown only once", source_task_ids=["arith/train/2"])
    # usefulness through the real path: episodes that showed them
    eps = store.episodes()
    for ep in eps[:8]:
        store.record_usage(ep.id, [good.id], True)
    for ep in eps[:6]:
        store.record_usage(ep.id, [bad.id], ep.verdict == "pass" and ep.id > 4)
    store.record_usage(eps[0].id, [lucky.id], True)
    return {"p1": p1, "p2": p2, "p3": p3, "good": good, "bad": bad}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.external.append(value)


def test_wilson_interval_known_values():
    lo, hi = wilson(30, 50)
    assert (round(lo, 4), round(hi, 4)) == (0.4618, 0.7239)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_report_has_every_section_and_is_self_contained(store, tmp_path):
    ids = populate(store)
    path = write_report(store, tmp_path / "r.html")
    page = path.read_text()
    parser = _Collect()
    parser.feed(page)
    assert parser.external == []  # nothing is fetched when the page opens
    assert parser.tags.count("svg") == 4  # accuracy, decisions, costs, growth
    for section in ("accuracy", "changes", "ratings", "decisions", "costs", "growth", "experiences"):
        assert f'id="{section}"' in page
    # accuracy table: 30/50 for the promoted candidate, with its Wilson interval
    assert "60.0%" in page and "46.2% – 72.4%" in page
    assert "rollback" in page and f"{ids['p2'].id} → {ids['p1'].id}" in page
    # experience text is data, never markup
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page
    # the two cycles' recorded tokens, in the cost summary
    assert "3,000 model tokens" in page
    assert "<b>1 / 2</b><span>promoted / decided</span>" in page


def test_experience_ranking_uses_interval_bounds(store):
    ids = populate(store)
    best, worst = ranked_experiences(load(store))
    assert [e.id for e in best][0] == ids["good"].id
    assert ids["bad"].id in [e.id for e in worst]
    shown = [e.content for e in best + worst]
    assert "A rule shown only once" not in shown  # one use is not evidence


def test_empty_store_renders_with_explanations(store, tmp_path):
    page = write_report(store, tmp_path / "empty.html").read_text()
    assert "No evaluation runs yet" in page and "The store is empty." in page
    assert "<svg" not in page


def test_cli_report_writes_the_file(settings, tmp_path):
    from typer.testing import CliRunner

    from agent.cli.app import app

    populate(Store(settings, embedder=HashEmbedder()))
    out = tmp_path / "cli.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.output


def test_two_runs_are_two_runs_and_a_rejected_candidate_is_a_candidate(store):
    """Cycles used to be grouped by number across runs: run 2's rejected cycle 1 was drawn as the
    incumbent of run 1's cycle 1."""
    from agent.surfaces.report import accuracy_points, policy_changes, render

    p1 = store.save_policy(_make(PolicySpec(), 1, None, "initial"))
    p2 = store.save_policy(_make(PolicySpec(insights=("Check the units of every answer.",)), 2, p1.id, "c1"))
    p3 = store.save_policy(_make(PolicySpec(insights=("Check the units of every answer.",), exemplars_k=4), 3,
                                 p2.id, "c1"))
    store.set_pointer("incumbent", p2.id)
    store.add(Promotion(cycle=1, candidate_id=p2.id, incumbent_before=p1.id, incumbent_after=p2.id, decision="promote",
                        delta=0.3, p_value=0.01, n=20, evidence={"run_id": "rA", "incumbent_acc": 0.3, "candidate_acc": 0.6}))
    store.add(Promotion(cycle=1, candidate_id=p3.id, incumbent_before=p2.id, incumbent_after=p2.id, decision="reject",
                        delta=-0.1, p_value=0.5, n=20, evidence={"run_id": "rB", "incumbent_acc": 0.6, "candidate_acc": 0.5}))
    for run in ("rA", "rB"):
        store.add(Cycle(run_id=run, number=1, status="done", tokens=10))
    data = load(store)
    rows = {(r["label"], r["role"]): r for r in accuracy_points(data)}
    assert set(rows) == {("run 1·c1", "incumbent"), ("run 1·c1", "candidate"), ("run 2·c1", "incumbent"),
                         ("run 2·c1", "candidate")}
    assert rows[("run 2·c1", "candidate")]["policy"] == p3.id and rows[("run 2·c1", "candidate")]["accuracy"] == 0.5
    assert rows[("run 2·c1", "incumbent")]["policy"] == p2.id
    changes = {c["candidate"]: c["changes"] for c in policy_changes(data)}
    assert "+ rule: Check the units of every answer." in changes[p2.id]
    assert any(c.startswith("exemplars_k:") for c in changes[p3.id])
    page = render(data)
    assert "<b>2</b><span>cycles in 2 run(s)</span>" in page
    assert "held-out accuracy after run 2·c1" in page  # the rejected candidate is not the incumbent's score


def test_ratings_from_chat_and_worker_are_shown(store):
    from agent.surfaces.report import rating_counts, render

    store.upsert_tasks([Task(id="user/train/a", suite="chat", split="train", question="q", answer="")])
    for i, (source, verdict, feedback) in enumerate([("chat", "pass", "rated good by chat"),
                                                     ("chat", "fail", "rated bad by chat: wrong"),
                                                     ("chat", "pending", ""), ("worker", "pass", "answer 4 matches 4")]):
        store.add_episode(Episode(run_key=f"r{i}", task_id="user/train/a", split="train", policy_id="p",
                                  model_fingerprint="f", source=source, verdict=verdict, feedback=feedback))
    counts = rating_counts(load(store))
    assert counts == {("chat", "rated good"): 1, ("chat", "rated bad"): 1, ("chat", "pending"): 1,
                      ("worker", "verified pass"): 1}
    assert 'id="ratings"' in render(load(store))
