"""The report shows the candidate search of a real (fake-model) multi-candidate cycle: every
candidate with its stage, screening score, dev evidence, Holm p and cost."""

from __future__ import annotations

import pytest

from agent.loop.graph import run_improve
from agent.surfaces import report
from agent.surfaces.report_search import search_rows
from tests.loop_fakes import answers_by_question
from tests.search_fakes import search_model
from tests.test_gate_loop import make
from tests.test_report import populate, store  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def answers():
    return answers_by_question("arith")


def test_every_candidate_of_the_cycle_is_a_row_with_its_evidence(tmp_path, answers):
    settings, store = make(tmp_path)
    summary = run_improve(settings, cycles=1, model=search_model(answers), store=store, run_id="search-test")
    ev = summary["history"][0]["evaluate"]
    rows = {r["proposer"]: r for r in search_rows(store.promotions())}
    assert set(rows) == {"context", "tools", "instruction"}
    # screened out on train: no dev numbers; the others were evaluated on dev
    assert rows["instruction"]["stage"] == "screen" and rows["instruction"]["decision"] == "reject"
    assert rows["instruction"]["delta"] is None and rows["instruction"]["screen"].endswith(
        f"vs {summary['history'][0]['screen']['incumbent_screen']['correct']}")
    dev = {c["proposer"]: c for c in ev["candidates"]}
    tools = rows["tools"]
    assert tools["stage"] == "dev" and tools["decision"] == "promote"
    assert tools["p_adjusted"] == dev["tools"]["p_adjusted"] and tools["n"] == dev["tools"]["n"]
    assert tools["tokens_per_task"] == pytest.approx(dev["tools"]["cost"]["tokens_per_task"])
    # the futility stop shows as items evaluated out of those planned
    assert rows["context"]["stopped_early"] and rows["context"]["n"] < rows["context"]["n_planned"]

    page = report.render(report.load(store))
    section = page.split('<section id="search">', 1)[1].split("</section>", 1)[0]
    assert section.count("<tr>") == 1 + 3
    assert f"{rows['context']['n']}/{rows['context']['n_planned']} (futility stop)" in section
    # the tools candidate wins every item it is shown: the early-success stop (on by default) ends it
    assert tools["stopped_for_efficacy"] and f"{tools['n']}/{tools['n_planned']} (early success)" in section
    assert f"{dev['tools']['p_adjusted']:.3g}" in section


def test_no_search_section_for_single_candidate_cycles(store):  # noqa: F811
    populate(store)  # decided cycles of the one-candidate form: no screening, no stage
    page = report.render(report.load(store))
    assert 'id="search"' not in page
