"""Strategy genes: voting, program mode on the real sandbox, the repair turn, the reasoning
fallback, code tasks solved by their kind. The fake model decides from the request (how many
messages, the sampling seed), never from prompt wording."""

from __future__ import annotations

import pytest

from agent.policy import BASELINE_SPEC, PolicySpec, baseline_policy
from agent.solver import Context, Solver
from agent.strategies import Attempt, answer_key, behaviour_vote, majority, visible_examples
from agent.tasks.base import verify_code
from memory.models import Task
from tests.fakes import ScriptedModel
from tools.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\n"


# ---------------------------------------------------------------- voting

@pytest.mark.parametrize("answers, winner", [
    (["18", "18.0", "$18", "7"], 0),          # one number written three ways
    (["7", "18", "18", "7"], 0),              # a tie goes to the answer seen first
    (["18", "7", "7", "18"], 0),
    (["", "", "5"], 2),                       # empty answers do not vote
    (["", ""], 0),                            # nothing at all: sample 0
    (["3", "4", "4"], 1),                     # plain majority
    (["1,000", "1000", "999"], 0),            # thousands separators normalise
])
def test_majority_vote_with_deterministic_tie_break(answers, winner) -> None:
    assert majority(answers) == winner


def test_answer_key_normalises_numbers_and_text() -> None:
    assert answer_key("18") == answer_key("18.00") == answer_key("$18")
    assert answer_key("Paris.") == answer_key("paris")


def test_code_candidates_are_voted_by_behaviour_on_visible_examples() -> None:
    wrong = Attempt("a", behaviour=(1, ("1", "9")))
    right = Attempt("b", behaviour=(2, ("1", "4")))
    broken = Attempt("c", behaviour=())
    assert behaviour_vote([wrong, right, right]) == 1
    assert behaviour_vote([broken, wrong]) == 1
    # Equal scores: the larger group behaving alike, then the lowest index.
    other = Attempt("d", behaviour=(1, ("1", "8")))
    assert behaviour_vote([other, wrong, wrong]) == 1
    assert behaviour_vote([other, wrong]) == 0


# ---------------------------------------------------------------- genes in the policy

def test_genes_at_default_keep_old_digests() -> None:
    # The digest of the default policy before the genes existed (commit 5f3a20b): stored
    # policies keep their ids and evaluation results.
    old = "4f0712daa9a4fd1b36597077796da875f4db21c388c4798326371273ec96d0a3"
    assert PolicySpec().digest() == old
    assert PolicySpec(mode="act", samples=1, instructions="").digest() == old
    assert PolicySpec(mode="program").digest() != PolicySpec().digest()
    assert PolicySpec(samples=3).digest() != PolicySpec().digest()
    with pytest.raises(ValueError):
        PolicySpec(mode="guess")
    with pytest.raises(ValueError):
        PolicySpec(samples=0)


def test_baseline_is_the_bare_model_reasoning_greedily_without_tools() -> None:
    assert BASELINE_SPEC.mode == "reason" and BASELINE_SPEC.tools == ()
    assert BASELINE_SPEC.temperature == 0 and BASELINE_SPEC.samples == 1
    assert BASELINE_SPEC.exemplars_k == 0 and BASELINE_SPEC.insights == ()
    assert baseline_policy().id.startswith("baseline-")


# ---------------------------------------------------------------- reason and program

def test_reason_mode_extracts_the_answer_from_free_text() -> None:
    model = ScriptedModel(lambda messages, kw: "3 + 4 is 7. The answer is 7.")
    result = Solver(model, []).solve("What is 3 + 4?", PolicySpec(mode="reason"))
    assert result.final_answer == "7"
    assert model.calls[0][1]["schema"] is None  # free text, no JSON grammar
    assert result.usage.calls == 1 and result.usage.completion_tokens > 0


def test_program_mode_runs_the_program_in_the_real_sandbox(sandbox) -> None:
    model = ScriptedModel(lambda messages, kw: fenced("apples = 3 * 4\nprint(apples + 2)"))
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program"))
    assert result.final_answer == "14"
    # The program is a python tool call and its printed output the tool's result.
    calls = [s for s in result.trajectory.steps if s.kind == "action" and s.action == "python"]
    outputs = [s for s in result.trajectory.steps if s.kind == "observation"]
    assert len(calls) == 1 and "print(apples + 2)" in calls[0].input
    assert len(outputs) == 1 and outputs[0].ok and outputs[0].content.strip() == "14"
    assert outputs[0].call_id == calls[0].call_id


def test_program_error_gets_one_repair_turn_with_the_error(sandbox) -> None:
    def reply(messages, kw):
        # First request: system + question. The repair request carries the failed turn too.
        return fenced("print(1 / 0)") if len(messages) == 2 else fenced("print(21 * 2)")

    model = ScriptedModel(reply)
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program"))
    assert result.final_answer == "42"
    assert len(model.calls) == 2
    repair = model.calls[1][0][-1]["content"]
    assert "ZeroDivisionError" in repair and "<data" in repair  # the error goes back, fenced
    assert result.usage.calls == 2


def test_program_repair_is_bounded_to_one_turn(sandbox) -> None:
    model = ScriptedModel(lambda messages, kw: fenced("x = 1"))  # never prints
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program"))
    assert result.final_answer == "" and "printed nothing" in result.error
    assert len(model.calls) == 2


def test_program_plus_reason_falls_back_to_reasoning(sandbox) -> None:
    model = ScriptedModel([fenced("pass"), fenced("import sys; sys.exit(3)"),
                           "Half of 10 is 5. The answer is 5."])
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program+reason"))
    assert result.final_answer == "5"
    assert [s.kind for s in result.trajectory.steps] == ["prompt", "action", "observation", "action",
                                                         "observation", "thought", "action"]
    assert model.calls[2][1]["schema"] is None and len(model.calls[2][0]) == 2


def test_program_plus_reason_keeps_a_working_program(sandbox) -> None:
    model = ScriptedModel([fenced("print(9)")])
    result = Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program+reason"))
    assert result.final_answer == "9" and len(model.calls) == 1


def test_samples_are_voted_and_seeded_per_sample(sandbox) -> None:
    printed = {1: "print(10)", 2: "print(12)", 3: "print(12.0)"}
    model = ScriptedModel(lambda messages, kw: fenced(printed[kw["seed"]]))
    spec = PolicySpec(mode="program", samples=3, temperature=0.7)
    result = Solver(model, [], sandbox=sandbox).solve("q", spec)
    assert result.final_answer == "12"
    assert [c[1]["temperature"] for c in model.calls] == [0.7] * 3
    vote = next(s for s in result.trajectory.steps if s.kind == "vote")
    assert vote.answers == ["10", "12", "12"] and vote.chosen == 1
    # Only the chosen sample's program is kept, so every view shows one coherent solution.
    kept = [s.input for s in result.trajectory.steps if s.kind == "action" and s.action == "python"]
    assert [k.strip() for k in kept] == ["print(12)"]
    assert result.usage.calls == 3


def test_act_mode_with_samples_votes_over_act_runs() -> None:
    answers = iter(["The answer is 4.", "The answer is 5.", "The answer is 5."])
    model = ScriptedModel(lambda messages, kw: next(answers))
    result = Solver(model, []).solve("q", PolicySpec(samples=3, temperature=0.5))
    assert result.final_answer == "5" and result.usage.calls == 3


def test_instructions_gene_reaches_the_prompt() -> None:
    model = ScriptedModel(lambda messages, kw: "The answer is 1.")
    Solver(model, []).solve("q", PolicySpec(mode="reason", instructions="Check units twice."))
    assert "Check units twice." in model.calls[0][0][0]["content"]


def test_program_mode_without_any_sandbox_builds_one_on_first_use() -> None:
    model = ScriptedModel(lambda messages, kw: fenced("print(3)"))
    solver = Solver(model, [])
    assert solver.solve("q", PolicySpec(mode="program")).final_answer == "3"
    assert hasattr(solver.sandbox, "run")


# ---------------------------------------------------------------- code tasks by kind

SQUARE = Task(id="file/dev/mine:sq", suite="file", split="dev", kind="code",
              question="Write `def square(x)` returning x squared.\n\n>>> square(3)\n9\n>>> square(-2)\n4\n",
              entry_point="square", tests="assert square(5) == 25\nassert square(0) == 0\n")


def test_visible_examples_are_read_from_doctest_lines() -> None:
    assert visible_examples(SQUARE.question) == [("square(3)", "9"), ("square(-2)", "4")]
    assert visible_examples("no examples here") == []


@pytest.mark.parametrize("spec", [PolicySpec(), PolicySpec(mode="reason"), PolicySpec(mode="program")])
def test_a_code_task_is_solved_by_writing_the_function_whatever_the_mode(spec, sandbox) -> None:
    model = ScriptedModel(lambda messages, kw: fenced("def square(x):\n    return x * x"))
    result = Solver(model, [], sandbox=sandbox).solve(SQUARE.question, spec, kind="code",
                                                      entry_point="square")
    assert "def square" in result.final_answer
    assert model.calls[0][1]["schema"] is None  # not a JSON action, not a numeric answer
    assert verify_code(SQUARE, result.final_answer, sandbox).correct


def test_code_failing_a_visible_example_gets_one_repair(sandbox) -> None:
    def reply(messages, kw):
        return fenced("def square(x):\n    return x + x" if len(messages) == 2 else
                      "def square(x):\n    return x ** 2")

    model = ScriptedModel(reply)
    result = Solver(model, [], sandbox=sandbox).solve(SQUARE.question, PolicySpec(), kind="code",
                                                      entry_point="square")
    assert "x ** 2" in result.final_answer and len(model.calls) == 2
    assert "square(3) returned 6, expected 9" in model.calls[1][0][-1]["content"]


def test_code_samples_vote_by_behaviour(sandbox) -> None:
    bodies = {1: "return x + x", 2: "return x * x", 3: "return abs(x) * abs(x)"}
    model = ScriptedModel(lambda messages, kw: fenced(f"def square(x):\n    {bodies[kw['seed']]}")
                          if len(messages) == 2 else fenced(f"def square(x):\n    {bodies[kw['seed']]}"))
    spec = PolicySpec(samples=3, temperature=0.8)
    result = Solver(model, [], sandbox=sandbox).solve(SQUARE.question, spec, kind="code",
                                                      entry_point="square")
    assert "x * x" in result.final_answer  # first of the two that pass both examples


def test_code_task_from_a_user_file_goes_through_run_attempt_as_code(tmp_path, settings, sandbox) -> None:
    import json

    from agent.attempt import run_attempt
    from agent.policy import ensure_initial
    from agent.tasks import get_suite
    from memory.embeddings import HashEmbedder
    from memory.store import Store

    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "sq", "prompt": SQUARE.question, "entry_point": "square",
                                "tests": SQUARE.tests, "split": "dev"}) + "\n")
    suite = get_suite("file", tasks_file=path)
    store = Store(settings, embedder=HashEmbedder(64))
    task = suite.load("dev")[0]
    store.upsert_tasks([task])
    model = ScriptedModel(lambda messages, kw: fenced("def square(x):\n    return x * x"))
    episode = run_attempt(store=store, solver=Solver(model, [], sandbox=sandbox), suite=suite, task=task,
                          policy=ensure_initial(store), run_key="t/1", source="eval", sandbox=sandbox)
    assert episode.verdict == "pass", episode.feedback


def test_repairs_gene_bounds_the_repair_turns(sandbox) -> None:
    for repairs, calls in ((0, 1), (1, 2), (2, 3)):
        model = ScriptedModel(lambda messages, kw: fenced("raise SystemExit(1)"))
        Solver(model, [], sandbox=sandbox).solve("q", PolicySpec(mode="program", repairs=repairs))
        assert len(model.calls) == calls


def test_the_baseline_writes_a_code_task_once_without_repair(sandbox) -> None:
    model = ScriptedModel(lambda messages, kw: fenced("def square(x):\n    return x + x"))
    result = Solver(model, [], sandbox=sandbox).solve(SQUARE.question, BASELINE_SPEC, kind="code",
                                                      entry_point="square")
    assert len(model.calls) == 1 and "x + x" in result.final_answer


# ---------------------------------------------------------------- evolve eval --baseline

def test_eval_baseline_row_and_paired_comparisons(tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    import agent.model.llm as llm
    from agent.cli.app import app

    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": f"q{i}", "answer": str(7 if i % 2 else 8),
                                        "split": "dev"}) + "\n" for i in range(6)))
    model = ScriptedModel(lambda messages, kw: {"action": "final_answer", "input": "7"} if kw["schema"]
                          else "So the answer is 7.")
    monkeypatch.setattr(llm, "make_model", lambda settings, model_id="": model)
    result = CliRunner().invoke(app, ["eval", "--tasks", str(path), "--split", "dev", "--baseline"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    base = next(line for line in lines if "(baseline)" in line)
    assert base.startswith("baseline-") and "3/6" in base and "tokens/item" in base
    assert "tokens/correct" in base and "95% CI" in base
    comparison = next(line for line in lines if " - baseline-" in line)
    assert comparison.startswith("p1-") and "McNemar p=" in comparison
    # The baseline reasoned in free text: no JSON action turn, no tools offered.
    free_text = [c for c in model.calls if c[1]["schema"] is None]
    assert len(free_text) >= 6


def test_strategies_report_their_steps_as_solver_events(sandbox) -> None:
    events = []
    model = ScriptedModel(lambda messages, kw: fenced("print(6 * 7)"))
    solver = Solver(model, [], sandbox=sandbox)
    solver.solve("q", PolicySpec(mode="program"), on_event=lambda kind, data: events.append((kind, data)))
    kinds = [k for k, _ in events]
    assert kinds == ["action", "observation", "final"]
    assert events[1][1]["content"].strip() == "42" and events[2][1]["answer"] == "42"
