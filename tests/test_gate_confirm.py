"""Confirmation on a fresh dev slice (loop.confirm_size): the gate's winner is promoted only if it
also wins, significantly, on dev items it was not chosen on."""

from __future__ import annotations

import pytest

from agent.loop.graph import run_improve
from agent.policy import INCUMBENT
from tests.loop_fakes import answers_by_question
from tests.search_fakes import search_model
from tests.test_gate_loop import make


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def _cycle(tmp_path, answers, **loop):
    settings, store = make(tmp_path, **loop)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="confirm-test")
    entry = summary["history"][0]
    initial = entry["incumbent_before"]
    dev = {c["proposer"]: c for c in entry["evaluate"]["candidates"]}
    return store, entry, dev, initial


def test_a_winner_confirmed_on_fresh_items_is_promoted(tmp_path, answers):
    store, entry, dev, _ = _cycle(tmp_path, answers, confirm_size=16)
    tools = dev["tools"]
    confirm = tools["confirm"]
    assert entry["decision"] == "promote" and store.get_pointer(INCUMBENT) == tools["candidate_id"]
    assert confirm["n"] == 16 and confirm["p_value"] < 0.05 and confirm["delta"] > 0
    # the fresh slice is dev, and none of it is among the items the winner was chosen on
    chosen_on = set(store.eval_runs()[0].task_ids)
    assert all(t.startswith("arith/dev") for t in confirm["task_ids"])
    assert not chosen_on & set(confirm["task_ids"]) and len(set(confirm["task_ids"])) == 16
    assert "confirmed on 16 fresh dev items" in tools["reason"]


def test_a_winner_that_cannot_be_confirmed_is_rejected_and_the_incumbent_stays(tmp_path, answers):
    # two fresh items cannot reach p < 0.05 (two wins: exact McNemar p = 0.5)
    store, entry, dev, initial = _cycle(tmp_path, answers, confirm_size=2)
    tools = dev["tools"]
    assert tools["p_adjusted"] < 0.05  # the gate alone would have promoted it
    assert tools["decision"] == "reject" and tools["reason"].startswith("not confirmed on 2 fresh dev items")
    assert entry["decision"] == "reject" and store.get_pointer(INCUMBENT) == initial
    assert all(p.decision == "reject" for p in store.promotions())


def test_off_by_default_no_confirmation_runs(tmp_path, answers):
    store, entry, dev, _ = _cycle(tmp_path, answers)
    assert entry["decision"] == "promote" and "confirm" not in dev["tools"]
