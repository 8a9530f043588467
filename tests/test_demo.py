"""`evolve demo` with a scripted model: the agent's own solver answers, the answer is checked
with the loop's verifier, and the cycle summary explains the gate's decision in plain words.
(The old bespoke demo loop printed 414 for the showcase question, whose answer is 411.)"""

from __future__ import annotations

import io
import re

from rich.console import Console

from agent.surfaces.demo import ANSWER, QUESTION, run_demo
from agent.surfaces.explain import explain_cycle
from memory.embeddings import HashEmbedder
from memory.store import Store
from tests.fakes import ScriptedModel
from tools.calculator import calculator


def demo_model(expression):
    def step(messages, kwargs):
        seen = [m["content"] for m in messages if m["role"] == "user" and "Result of calculator" in m["content"]]
        if kwargs.get("schema") is None:
            return "17 cents times 24 pencils, plus the 3 cent eraser."
        if not seen:
            return {"action": "calculator", "input": expression}
        result = re.findall(r"-?\d+(?:\.\d+)?", seen[-1].split("Result of calculator:")[1])[0]
        return {"action": "final_answer", "input": result}

    return ScriptedModel(step)


def run(settings, expression):
    buf = io.StringIO()
    code = run_demo(settings, QUESTION, Console(file=buf, width=200), model=demo_model(expression),
                    store=Store(settings, embedder=HashEmbedder()), tools=[calculator])
    return code, buf.getvalue()


def test_the_showcase_answer_is_checked_against_411(settings):
    assert ANSWER == str(17 * 24 + 3)
    code, text = run(settings, "17*24+3")
    assert code == 0 and "call calculator(17*24+3)" in text and "answer 411" in text and "right" in text


def test_a_wrong_showcase_answer_is_called_wrong(settings):
    code, text = run(settings, "17*24+3+300/100")
    assert code == 1 and "wrong" in text and "411" in text


EV = {"incumbent_acc": 0.3, "candidate_acc": 0.2, "delta": -0.1, "ci_low": -0.3, "ci_high": 0.1, "p_value": 0.62,
      "threshold": {"significance": 0.05, "min_delta": 0.0}}


def test_a_rejection_is_explained():
    h = {"cycle": 1, "acquire": {"passed": 2, "total": 4}, "refine": {"exemplar": 2, "add": 1},
         "update": {"candidate_id": "p2-abc"}, "evaluate": EV, "decision": "reject"}
    text = " ".join(explain_cycle(h))
    assert "solved 2 of 4" in text and "2 new worked examples" in text and "p2-abc" in text
    assert "incumbent 30%, candidate 20%" in text and "Rejected: the candidate did not score higher" in text


def test_a_lucky_gain_and_a_promotion_are_explained():
    lucky = {**EV, "candidate_acc": 0.4, "delta": 0.1, "p_value": 0.5}
    assert "could be luck" in " ".join(explain_cycle({"cycle": 2, "evaluate": lucky, "decision": "reject"}))
    win = {**EV, "candidate_acc": 0.9, "delta": 0.6, "p_value": 0.01}
    assert "Promoted" in " ".join(explain_cycle({"cycle": 3, "evaluate": win, "decision": "promote"}))
    assert "stopped early" not in " ".join(explain_cycle({"cycle": 3, "evaluate": win, "decision": "promote"}))
    early = {**win, "stopped_for_efficacy": True}
    assert "stopped early" in " ".join(explain_cycle({"cycle": 3, "evaluate": early, "decision": "promote"}))
    assert "nothing to test" in " ".join(explain_cycle({"cycle": 4, "update": {"candidate_id": "p1"}}))


def test_the_gates_own_reason_and_holm_are_named():
    ev = {**EV, "candidate_acc": 0.4, "delta": 0.1, "p_value": 0.03, "reason": "adjusted p 0.0900 not below 0.05",
          "threshold": {"significance": 0.05, "min_delta": 0.0, "m": 3}}
    text = " ".join(explain_cycle({"cycle": 1, "evaluate": ev, "decision": "reject"}))
    assert "3 candidates were tested" in text and "(gate: adjusted p 0.0900 not below 0.05)" in text


def test_a_loop_summary_prints_with_its_explanation(tmp_path, capsys):
    from agent.cli.improve import print_summary
    from agent.config import Settings
    from agent.loop.graph import run_improve
    from tests.loop_fakes import answers_by_question, loop_model

    settings = Settings(home=tmp_path / "home", loop={"suite": "arith", "train_per_cycle": 4, "dev_size": 6})
    settings.ensure_dirs()
    summary = run_improve(settings, cycles=1, model=loop_model(answers_by_question("arith")),
                          store=Store(settings, embedder=HashEmbedder(64)))
    print_summary(summary)
    text = capsys.readouterr().out
    assert "Cycle 1: the agent solved" in text and ("Promoted" in text or "Rejected" in text)
    assert "stopped: completed 1 cycle(s)" in text


def test_the_summary_says_what_the_candidate_changes_for_every_proposer():
    from agent.loop.proposers import NAMES
    from agent.surfaces.explain import WHAT_CHANGED, explain_cycle

    assert set(NAMES) | {"finetune", "lora"} <= set(WHAT_CHANGED)
    upd = {"candidate_id": "p2-x", "candidates": [{"candidate_id": "p2-x", "proposer": "mixed_vote"}]}
    lines = explain_cycle({"cycle": 1, "update": upd})
    assert any("p2-x that solves by reasoning and by a program" in line for line in lines)
    legacy = explain_cycle({"cycle": 1, "update": {"candidate_id": "p2-y"}})  # no proposer recorded
    assert any("p2-y that shows this experience in its prompts" in line for line in legacy)
