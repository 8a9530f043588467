"""Training data for in-weight updates: verified train experience only, deduplicated; STaR
rationalisation marked; adapters stored content-addressed and verified when resolved."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError, IntegrityError
from agent.model import adapters
from agent import prompts
from agent.model.adapters import (SAMPLED_SOURCE, TrainExample, is_train_only, rationalise, rationalised_episode,
                                  verified_examples)
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store
from agent.policy import PolicySpec, ensure_initial
from agent.tasks.answers import extract_answer
from memory.trajectory import Action, Observation, ParseError, Prompt, Thought, Trajectory, Vote
from tests.fakes import ScriptedModel


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder())
    ensure_initial(st)  # the policy every episode below belongs to (its mode shapes the rows)
    yield st
    st.close()


POLICY_ID = "p1-" + PolicySpec().digest()[:8]  # the id ensure_initial gives the default spec


def _solved(question, text):
    """The act policy's shortest episode: the reasoning states the answer, no act turn."""
    return Trajectory(steps=[Prompt(system="solve", question=question), Thought(text=text),
                             Action(action="final_answer", input=extract_answer(text), source="thought")]).to_stored()


def _episode(task_id, answer, *, verdict="pass", key=None, trajectory=None, policy_id=None, source="acquire"):
    return Episode(run_key=key or f"{task_id}/{answer}/{verdict}", task_id=task_id, split="train",
                   policy_id=policy_id or POLICY_ID, model_fingerprint="fake", verdict=verdict, final_answer=answer,
                   source=source, trajectory=trajectory or _solved("q", answer))


# One row per way a held-out item could leak into the weights. Never delete a row.
LEAKS = [
    ("dev task", [Task(id="s/dev/1", suite="s", split="dev", question="q", answer="1")], "s/dev/1"),
    ("test task", [Task(id="s/test/1", suite="s", split="test", question="q", answer="1")], "s/test/1"),
    ("train row, dev id", [Task(id="s/dev/2", suite="s", split="train", question="q", answer="1")], "s/dev/2"),
    ("variation of a dev task",
     [Task(id="s/dev/3", suite="s", split="dev", question="q", answer="1"),
      Task(id="s/self/3", suite="s", split="train", origin="self-proposed", question="q'", answer="2",
           parent_task_id="s/dev/3")], "s/self/3"),
    ("variation of a variation of a test task",
     [Task(id="s/test/4", suite="s", split="test", question="q", answer="1"),
      Task(id="s/self/4a", suite="s", split="train", origin="self-proposed", question="q'", parent_task_id="s/test/4"),
      Task(id="s/self/4b", suite="s", split="train", origin="self-proposed", question="q''", parent_task_id="s/self/4a")],
     "s/self/4b"),
    ("variation with an unknown parent",
     [Task(id="s/self/5", suite="s", split="train", origin="self-proposed", question="q'", parent_task_id="s/gone/5")],
     "s/self/5"),
    ("variation whose parent id says test",
     [Task(id="s/self/6", suite="s", split="train", origin="self-proposed", question="q'", parent_task_id="s/test/6")],
     "s/self/6"),
]


@pytest.mark.parametrize("name,tasks,target", LEAKS, ids=[row[0] for row in LEAKS])
def test_no_held_out_task_or_anything_derived_from_one_reaches_training(store, name, tasks, target):
    store.upsert_tasks([Task(id="s/train/ok", suite="s", split="train", question="what is 2+2?", answer="4"), *tasks])
    store.add_episode(_episode("s/train/ok", "The answer is 4."))
    store.add_episode(_episode(target, "The answer is 1."))
    examples = verified_examples(store)
    assert [e.task_id for e in examples] == ["s/train/ok"]
    assert not is_train_only(store, store.get_task(target))


def test_failed_episodes_are_not_training_data(store):
    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="q", answer="4")])
    store.add_episode(_episode("s/train/1", "The answer is 5.", verdict="fail"))
    store.add_episode(_episode("s/train/1", "The answer is 4.", verdict="error", key="e"))
    assert verified_examples(store) == []


def test_distinct_solutions_per_task_are_kept_duplicates_dropped_and_capped(store):
    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="2+2?", answer="4")])
    for i, text in enumerate(["2+2 = 4. The answer is 4.", "2 + 2 =  4.  the answer is 4.",  # same, spacing/case
                              "Two plus two is four. The answer is 4.", "4. The answer is 4.", "Add: 4. The answer is 4.",
                              "Sum is 4. The answer is 4."]):
        store.add_episode(_episode("s/train/1", text, key=f"k{i}", trajectory=_solved("2+2?", text),
                                   source="acquire" if i == 0 else SAMPLED_SOURCE))
    examples = verified_examples(store, max_per_task=4)
    assert len(examples) == 4
    assert len({e.id for e in examples}) == 4
    assert examples[0].messages == ({"role": "system", "content": "solve"}, {"role": "user", "content": "2+2?"},
                                    {"role": "assistant", "content": "2+2 = 4. The answer is 4."})
    assert [e.source for e in examples] == ["verified", "sampled", "sampled", "sampled"]
    assert all(e.episode_id is not None for e in examples)


def test_an_episode_of_an_unknown_policy_is_skipped_not_guessed(store):
    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="2+2?", answer="4")])
    store.add_episode(_episode("s/train/1", "The answer is 4.", policy_id="p9-gone"))
    assert verified_examples(store) == []


def _calculator():
    from tools.registry import calculator

    return [calculator]


def _act_episode_steps():
    return [Prompt(system="solve", question="2+2?"),
            Thought(text="Add the two numbers."),
            Action(action="calculator", input="2+2", call_id="c1", arguments='{"expression": "2+2"}'),
            Observation(tool="calculator", content="4", call_id="c1"),
            Thought(text="So it is 4."),
            Action(action="final_answer", input="4")]


def test_an_act_episode_becomes_the_turns_the_solver_sent(store):
    """Every message the act graph sent, and each reply the model gave, in order."""
    tools = _calculator()
    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="2+2?", answer="4")])
    store.add_episode(_episode("s/train/1", "4", trajectory=Trajectory(steps=_act_episode_steps()).to_stored()))
    (ex,) = verified_examples(store, tools)
    assert list(ex.messages) == [
        {"role": "system", "content": "solve"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Add the two numbers."},
        {"role": "user", "content": prompts.act(tools)},
        {"role": "assistant", "content": json.dumps({"action": "calculator", "input": "2+2"})},
        {"role": "user", "content": prompts.observation("calculator", "4", ok=True, untrusted=False)},
        {"role": "assistant", "content": "So it is 4."},
        {"role": "user", "content": prompts.act(tools)},
        {"role": "assistant", "content": json.dumps({"action": "final_answer", "input": "4"})},
    ]


class _Recorder:
    """A scripted model for the real solver that keeps every request it was sent."""

    def __init__(self, replies):
        self.sent = []
        self.fingerprint = self.name = "fake"
        self.model = ScriptedModel(list(replies))

    def complete(self, messages, **kw):
        self.sent.append([dict(m) for m in messages])
        return self.model.complete(messages, **kw)


SOLVES = [
    ("a tool call, then the answer in an act turn",
     ["Add the two numbers.", '{"action": "calculator", "input": "2+2"}',
      "So it is 4.", '{"action": "final_answer", "input": "4"}']),
    ("an act reply that does not parse, then the reasoning states the answer",
     ["Add the two numbers.", '{"action": "final_answer", "input": ', "2+2 = 4. The answer is 4."]),
]


@pytest.mark.parametrize("name,replies", SOLVES, ids=[s[0] for s in SOLVES])
def test_the_row_of_a_real_solve_is_what_the_solver_sent(store, name, replies):
    """The row rebuilt from a stored act episode equals the solver's last request plus its reply."""
    from agent.solver import Solver

    rec = _Recorder(replies)
    result = Solver(rec, _calculator(), max_steps=4).solve("2+2?", PolicySpec())
    assert result.final_answer == "4"
    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="2+2?", answer="4")])
    store.add_episode(_episode("s/train/1", "4", trajectory=result.trajectory.to_stored()))
    (ex,) = verified_examples(store, _calculator())
    rows = list(ex.messages)
    # The solver's history keeps an empty "thought" in its earlier JSON turns; the row has the
    # reply the model produced under the think-first act schema, which has no "thought".
    strip = [{**m, "content": m["content"].replace('"thought": "", ', "")} for m in rec.sent[-1]]
    assert rows[:-1] == strip
    last = replies[-1]
    assert rows[-1] == {"role": "assistant", "content": json.dumps(json.loads(last)) if last.startswith("{") else last}


@pytest.mark.parametrize("name,spec,steps,expect", [
    ("reason: system, question, the reasoning",
     PolicySpec(mode="reason"),
     [Prompt(system="sys", question="q"), Thought(text="3+4 = 7. The answer is 7."),
      Action(action="final_answer", input="7")],
     [("system", "sys"), ("user", "q"), ("assistant", "3+4 = 7. The answer is 7.")]),
    ("program: the program that printed the answer, as the reply to the first request",
     PolicySpec(mode="program"),
     [Prompt(system="sys", question="q"), Action(action="python", input="print(8)", call_id="a"),
      Observation(tool="python", content="8", call_id="a"), Action(action="final_answer", input="8")],
     [("system", "sys"), ("user", prompts.program_request("q")), ("assistant", "```python\nprint(8)\n```")]),
    ("act, the act reply did not parse: the error goes back, the model reasons again",
     PolicySpec(),
     [Prompt(system="sys", question="q"), Thought(text="Think."), ParseError(error="expected a JSON object", raw="{"),
      Thought(text="The answer is 7."), Action(action="final_answer", input="7", source="thought")],
     [("system", "sys"), ("user", "q"), ("assistant", "Think."),
      ("user", prompts.parse_error("expected a JSON object")), ("assistant", "The answer is 7.")]),
    ("act, reasoning states the answer: no act turn",
     PolicySpec(),
     [Prompt(system="sys", question="q"), Thought(text="The answer is 7."),
      Action(action="final_answer", input="7", source="thought")],
     [("system", "sys"), ("user", "q"), ("assistant", "The answer is 7.")]),
])
def test_rows_follow_the_policy_mode(name, spec, steps, expect):
    from agent.model.rows import inference_messages

    msgs = inference_messages(Trajectory(steps=steps), spec, _calculator())
    assert [(m["role"], m["content"]) for m in msgs] == expect, name


# Shapes the solver's turns cannot be rebuilt for exactly: left out, never approximated.
UNREBUILDABLE = [
    ("a parse error without think-first (the malformed reply was in the history)", PolicySpec(think_first=False),
     [Prompt(system="s", question="q"), ParseError(error="bad", raw="{"), Action(action="final_answer", input="1")]),
    ("act with votes", PolicySpec(samples=3, temperature=0.7),
     [Prompt(system="s", question="q"), Thought(text="The answer is 1."),
      Action(action="final_answer", input="1", source="thought"), Vote(answers=["1", "1", "2"])]),
    ("program+reason answered by the reasoning", PolicySpec(mode="program+reason"),
     [Prompt(system="s", question="q"), Action(action="python", input="x", call_id="a"),
      Observation(tool="python", ok=False, content="err", call_id="a"), Thought(text="The answer is 1."),
      Action(action="final_answer", input="1")]),
    ("no prompt", PolicySpec(), [Thought(text="The answer is 1."), Action(action="final_answer", input="1", source="thought")]),
    ("a tool call without its result", PolicySpec(), [Prompt(system="s", question="q"), Thought(text="t"),
                                                      Action(action="calculator", input="1+1", call_id="a")]),
]


@pytest.mark.parametrize("name,spec,steps", UNREBUILDABLE, ids=[u[0] for u in UNREBUILDABLE])
def test_trajectories_whose_turns_cannot_be_rebuilt_are_left_out(name, spec, steps):
    from agent.model.rows import inference_messages

    assert inference_messages(Trajectory(steps=steps), spec, _calculator()) is None


def _suite():
    from agent.tasks import get_suite

    return get_suite("arith")


def test_rationalisation_hides_the_hint_and_is_marked(store):
    task = Task(id="s/train/1", suite="s", split="train", question="What is 6*7?", answer="42")
    store.upsert_tasks([task])
    model = ScriptedModel(lambda msgs, kw: "6*7 = 42. The answer is 42." if "42" in msgs[-1]["content"] else "no")
    policy = store.get_policy(POLICY_ID)
    ep = rationalised_episode(model, _suite(), store, task, policy, _calculator(), run_key="r1")
    assert ep is not None and ep.source == "rationalised" and ep.verdict == "pass" and ep.split == "train"
    assert "42" in model.calls[0][0][-1]["content"]  # the hint was given
    (ex,) = verified_examples(store, _calculator())
    assert ex.source == "rationalised"
    assert ex.messages[1] == {"role": "user", "content": "What is 6*7?"}  # and is gone from the example
    assert ex.messages[0]["content"] == prompts.system_message(PolicySpec(), _calculator())  # the solver's system
    assert "hint" not in json.dumps(ep.trajectory).lower()
    again = rationalised_episode(ScriptedModel([]), _suite(), store, task, policy, _calculator(), run_key="r1")
    assert again.id == ep.id  # idempotent by run key: no second model call


@pytest.mark.parametrize("reply,why", [("The answer is 41.", "fails the verifier"),
                                       ("Using the hint, the answer is 42.", "mentions the hint"),
                                       ("6*7 is 42", "states no marked answer, so the solver would act next"),
                                       ("", "empty")])
def test_rationalisations_that_fail_or_leak_the_hint_are_dropped(store, reply, why):
    task = Task(id="s/train/1", suite="s", split="train", question="What is 6*7?", answer="42")
    store.upsert_tasks([task])
    assert rationalise(ScriptedModel([reply]), _suite(), store, task, PolicySpec(), _calculator()) is None, why


@pytest.mark.parametrize("name,tasks,target", LEAKS, ids=[row[0] for row in LEAKS])
def test_held_out_tasks_and_their_descendants_are_never_rationalised(store, name, tasks, target):
    store.upsert_tasks(tasks)
    model = ScriptedModel([])  # any call would fail the test: the script is empty
    task = store.get_task(target)
    assert rationalise(model, _suite(), store, task, PolicySpec(), _calculator()) is None
    assert rationalised_episode(model, _suite(), store, task, store.get_policy(POLICY_ID), run_key="x") is None
    assert model.calls == []


@pytest.mark.parametrize("source", ["acquire", SAMPLED_SOURCE, "rationalised"])
@pytest.mark.parametrize("name,tasks,target", LEAKS, ids=[row[0] for row in LEAKS])
def test_no_held_out_episode_of_any_source_reaches_training(store, name, tasks, target, source):
    store.upsert_tasks(tasks)
    store.add_episode(_episode(target, "The answer is 1.", source=source))
    assert verified_examples(store) == []


def test_adapters_are_content_addressed_and_verified(settings):
    np = pytest.importorskip("numpy")
    pytest.importorskip("gguf")
    from agent.model.lora_gguf import LoraAdapter

    def make():
        return LoraAdapter(arch="llama", alpha=16.0,
                           pairs={"blk.0.attn_q.weight": (np.ones((2, 4), np.float32), np.ones((6, 2), np.float32))})

    ref = adapters.save_adapter(settings.home, make(), {"example_ids": ["a"]}, {"seconds": 1.0})
    again = adapters.save_adapter(settings.home, make(), {"example_ids": ["a"]}, {"seconds": 9.0})
    assert ref == again and ref.startswith("sha256:")
    path = adapters.resolve_adapter(settings.home, ref)
    assert path.name == ref[7:] + ".gguf"
    record = adapters.provenance_of(settings.home, ref)
    assert record["example_ids"] == ["a"] and record["sha256"] == ref[7:]
    other = adapters.save_adapter(settings.home, make(), {"example_ids": ["b"]})
    assert other != ref  # provenance is part of the file, so of the address
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):
        adapters.resolve_adapter(settings.home, ref)


@pytest.mark.parametrize("ref", ["", "latest", "sha256:xyz", "../../etc/passwd", "sha256:" + "0" * 64])
def test_bad_adapter_references_are_config_errors(settings, ref):
    with pytest.raises(ConfigError):
        adapters.resolve_adapter(settings.home, ref)


def test_example_ids_are_content_hashes():
    msgs = ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a"})
    assert adapters._example_id(msgs) == adapters._example_id(json.loads(json.dumps(msgs)))
    assert TrainExample(id="x", task_id="t", episode_id=None, messages=msgs).source == "verified"
