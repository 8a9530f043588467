"""The multi-candidate cycle end to end with a scripted model: proposals, screening, futility on
dev, the Holm gate, cost in the evidence, and a record of every candidate."""

from __future__ import annotations

import pytest
from sqlmodel import select

from agent.config import Settings
from agent.loop.graph import run_improve
from agent.policy import INCUMBENT, spec_of
from memory.embeddings import HashEmbedder
from memory.models import EvalResult, EvalRun, Promotion
from memory.store import Store
from tests.loop_fakes import answers_by_question
from agent.loop.proposers import INSTRUCTION_SCHEMA
from tests.search_fakes import INSTRUCTION, search_model


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


# A fixed run id: the train tasks acquired and screened are drawn from it, so the outcome is fixed.
def make(tmp_path, **loop):
    settings = Settings(home=tmp_path / "home", loop={
        "suite": "arith", "train_per_cycle": 4, "dev_size": 24, "patience": 1, "exemplars_k": 2,
        "candidates_per_cycle": 3, "screen_size": 4, "survivors": 2,
        # the proposers this fake can tell apart (strategy genes are another suite's business)
        "proposers": ["context", "tools", "instruction"], **loop})
    settings.ensure_dirs()
    return settings, Store(settings, embedder=HashEmbedder(64))


def promotions(store):
    with store.session() as s:
        return list(s.exec(select(Promotion).order_by(Promotion.id)))


def test_several_candidates_screened_gated_and_all_recorded(tmp_path, answers):
    settings, store = make(tmp_path)
    model = search_model(answers)
    summary = run_improve(settings, cycles=1, model=model, store=store, run_id="search-test")
    entry = summary["history"][0]
    # the reflective proposer saw failed train episodes only, never a held-out item
    reflect = [m for m, kw in model.calls if kw.get("schema") == INSTRUCTION_SCHEMA]
    assert len(reflect) == 1
    held_out = [t.question for t in store.tasks(split="dev")]
    assert held_out and not [q for q in held_out if q in reflect[0][1]["content"]]
    proposed = entry["update"]["candidates"]
    assert [c["proposer"] for c in proposed] == ["context", "tools", "instruction"]
    by_name = {c["proposer"]: c["candidate_id"] for c in proposed}
    # one mutation each
    initial = spec_of(store.get_policy(store.get_policy(by_name["tools"]).parent_id))
    assert spec_of(store.get_policy(by_name["tools"])).tools == (*initial.tools, "python")
    written = spec_of(store.get_policy(by_name["instruction"]))
    assert INSTRUCTION in written.system_prompt + getattr(written, "instructions", "")
    # screening: same train minibatch for all, apart from this cycle's acquire tasks
    screen = entry["screen"]
    assert len(screen["screen_ids"]) == 4 and all(t.startswith("arith/train") for t in screen["screen_ids"])
    acquired = {e.task_id for e in store.episodes(source="acquire")}
    assert len(acquired) == 4 and not acquired & set(screen["screen_ids"])
    assert screen["survivor_ids"] == [by_name["context"], by_name["tools"]]
    out = next(c for c in screen["screened"] if c["proposer"] == "instruction")
    assert not out["survived"] and out["screen"]["n"] == 4
    # dev: the tools candidate wins and is the one promotion; the context candidate, equal to the
    # incumbent on every item, is stopped once 6 wins could no longer fit (5 left: p 0.0625)
    ev = entry["evaluate"]
    assert entry["decision"] == "promote" and ev["promoted"] == by_name["tools"]
    assert store.get_pointer(INCUMBENT) == by_name["tools"]
    dev = {c["proposer"]: c for c in ev["candidates"]}
    assert dev["tools"]["candidate_acc"] == 1.0 and dev["tools"]["p_adjusted"] < 0.05
    assert dev["tools"]["p_adjusted"] == pytest.approx(min(1.0, 2 * dev["tools"]["p_value"]))  # Holm, m=2
    assert dev["context"]["stopped_early"] and dev["context"]["n"] == 19 and dev["context"]["decision"] == "reject"
    with store.session() as s:
        run = s.exec(select(EvalRun).where(EvalRun.policy_id == by_name["context"], EvalRun.split == "dev")).one()
        assert len(s.exec(select(EvalResult).where(EvalResult.eval_run_id == run.id)).all()) == 19
        assert run.n == 19 and len(run.task_ids) == 24  # evaluated, of the planned
    # cost is evidence: tokens and seconds per task and per correct answer, for both sides
    cost = dev["tools"]["cost"]
    assert cost["tokens_per_task"] > 0 and cost["tokens_per_correct"] == pytest.approx(cost["tokens_per_task"])
    assert cost["seconds_per_task"] is not None and ev["incumbent_cost"]["tokens_per_task"] > 0
    assert dev["tools"]["cost_ratio"] > 1.0  # the python tool's description lengthens every prompt
    # every candidate has a row, with its evidence; the promoted one last
    rows = promotions(store)
    assert [(r.candidate_id, r.decision) for r in rows] == [
        (by_name["instruction"], "reject"), (by_name["context"], "reject"), (by_name["tools"], "promote")]
    assert rows[0].evidence["stage"] == "screen" and rows[0].evidence["screen"]["correct"] <= 4
    assert rows[2].p_value == dev["tools"]["p_value"] and rows[2].evidence["p_adjusted"] < 0.05
    assert rows[2].evidence["cost"]["tokens"] > 0 and rows[2].evidence["run_id"] == summary["run_id"]
    assert all(r.incumbent_before == initial_id(store, by_name) for r in rows)


def initial_id(store, by_name):
    return store.get_policy(by_name["tools"]).parent_id


def test_cost_rule_rejects_a_gain_bought_with_more_tokens(tmp_path, answers):
    settings, store = make(tmp_path, max_cost_ratio=1.0)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="search-test")
    ev = summary["history"][0]["evaluate"]
    tools = next(c for c in ev["candidates"] if c["proposer"] == "tools")
    assert tools["p_adjusted"] < 0.05 and tools["decision"] == "reject" and "cost ratio" in tools["reason"]
    assert summary["history"][0]["decision"] == "reject"
    assert [r.decision for r in promotions(store)] == ["reject"] * 3


def test_without_screening_the_first_survivors_go_to_dev(tmp_path, answers):
    settings, store = make(tmp_path, screen_size=0, survivors=3)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="search-test")
    ev = summary["history"][0]["evaluate"]
    assert [c["proposer"] for c in ev["candidates"]] == ["context", "tools", "instruction"]
    assert ev["threshold"]["m"] == 3 and ev["promoted"] is not None


def test_rejected_candidates_are_not_proposed_again_against_the_same_incumbent(tmp_path, answers):
    # python does not help this time: nothing beats the incumbent, every candidate is rejected
    settings, store = make(tmp_path, screen_size=0, survivors=3, patience=3)
    summary = run_improve(settings, cycles=2, model=search_model(answers, python_helps=False), store=store,
                          run_id="search-test")
    first, second = (h["update"]["candidates"] for h in summary["history"])
    assert "instruction" in [c["proposer"] for c in first]
    rejected = {c["candidate_id"] for c in first} - {first[0]["candidate_id"]}  # context changes anyway
    assert rejected and not rejected & {c["candidate_id"] for c in second}
    assert all(h["decision"] == "reject" for h in summary["history"])


def test_a_malformed_instruction_reply_proposes_nothing(tmp_path, answers):
    settings, store = make(tmp_path, screen_size=0)
    summary = run_improve(settings, cycles=1, model=search_model(answers, instruction="not json at all"),
                          store=store, run_id="search-test")
    assert [c["proposer"] for c in summary["history"][0]["update"]["candidates"]] == ["context", "tools"]


def test_a_positive_but_insignificant_gain_is_rejected_by_the_loop(tmp_path, answers):
    # 5 dev items: 5 wins of 5 at most, p >= 0.0625, so no gain here can be significant
    settings, store = make(tmp_path, dev_size=5, screen_size=0, candidates_per_cycle=2, futility_stop=False)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="search-test")
    tools = next(c for c in summary["history"][0]["evaluate"]["candidates"] if c["proposer"] == "tools")
    assert tools["delta"] > 0 and tools["p_value"] >= 0.05 and not tools["stopped_early"]
    assert tools["decision"] == "reject" and summary["history"][0]["decision"] == "reject"
    assert store.get_pointer(INCUMBENT) == store.get_policy(tools["candidate_id"]).parent_id


@pytest.mark.parametrize("efficacy_p", [0.001, 0.0])
def test_a_clearly_better_candidate_stops_early_for_success_and_is_promoted(tmp_path, answers, efficacy_p):
    settings, store = make(tmp_path, screen_size=0, candidates_per_cycle=2, efficacy_p=efficacy_p)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="search-test")
    ev = summary["history"][0]["evaluate"]
    tools = next(c for c in ev["candidates"] if c["proposer"] == "tools")
    assert ev["promoted"] == tools["candidate_id"] and tools["decision"] == "promote"
    assert not tools["stopped_early"]  # that flag is the futility stop's: never promoted
    with store.session() as s:
        run = s.exec(select(EvalRun).where(EvalRun.policy_id == tools["candidate_id"], EvalRun.split == "dev")).one()
    if efficacy_p:
        # below 0.001 and below 0.05 / 2 candidates after some wins without a loss: the rest is not run
        assert tools["stopped_for_efficacy"] and tools["n"] < 24 == tools["n_planned"]
        assert tools["p_value"] < 0.001 and run.n == tools["n"] and "stopped early for success" in tools["reason"]
    else:
        assert not tools["stopped_for_efficacy"] and tools["n"] == 24 and run.n == 24
