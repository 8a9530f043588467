"""Training data for in-weight updates: verified train experience only, deduplicated; STaR
rationalisation marked; adapters stored content-addressed and verified when resolved."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError, IntegrityError
from agent.model import adapters
from agent.model.adapters import TrainExample, is_train_only, rationalise, verified_examples
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store
from tests.fakes import ScriptedModel


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder())
    yield st
    st.close()


def _episode(task_id, answer, *, verdict="pass", key=None, trajectory=None):
    return Episode(run_key=key or f"{task_id}/{answer}/{verdict}", task_id=task_id, split="train",
                   policy_id="p1", model_fingerprint="fake", verdict=verdict, final_answer=answer,
                   trajectory=trajectory or [])


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
        store.add_episode(_episode("s/train/1", text, key=f"k{i}"))
    examples = verified_examples(store, max_per_task=4)
    assert len(examples) == 4
    assert len({e.id for e in examples}) == 4
    assert examples[0].messages == ({"role": "user", "content": "2+2?"},
                                    {"role": "assistant", "content": "2+2 = 4. The answer is 4."})
    assert all(e.source == "verified" and e.episode_id is not None for e in examples)


def test_a_typed_trajectory_becomes_the_plain_chat_the_embedded_model_sees(store):
    from memory.trajectory import Action, Observation, Prompt, Thought, Trajectory

    store.upsert_tasks([Task(id="s/train/1", suite="s", split="train", question="2+2?", answer="4")])
    steps = Trajectory(steps=[
        Prompt(system="solve", question="2+2?"),
        Thought(text="Add the two numbers."),
        Action(action="calculator", input="2+2", call_id="c1", arguments='{"expression": "2+2"}'),
        Observation(tool="calculator", content="4", call_id="c1"),
        Thought(text="So it is 4. The answer is 4."),
        Action(action="final_answer", input="4", source="thought"),
    ])
    store.add_episode(_episode("s/train/1", "4", trajectory=steps.to_stored()))
    (ex,) = verified_examples(store)
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert ex.messages[0]["content"] == "solve" and ex.messages[1]["content"] == "2+2?"
    assert '"calculator"' in ex.messages[2]["content"] and "Add the two numbers." in ex.messages[2]["content"]
    assert ex.messages[3]["content"].startswith("[calculator result]")
    assert "The answer is 4." in ex.messages[4]["content"]


def test_rationalisation_hides_the_hint_and_is_marked(store):
    task = Task(id="s/train/1", suite="s", split="train", question="What is 6*7?", answer="42")
    store.upsert_tasks([task])
    model = ScriptedModel(lambda msgs, kw: "6*7 = 42. The answer is 42." if "42" in msgs[-1]["content"] else "no")
    verify = lambda t, text: type("V", (), {"passed": t.answer in text})()  # noqa: E731
    ex = rationalise(model, verify, store, task)
    assert ex is not None and ex.source == "rationalised" and ex.episode_id is None
    assert "42" in model.calls[0][0][-1]["content"]  # the hint was given
    assert ex.messages[0] == {"role": "user", "content": "What is 6*7?"}  # and is gone from the example


@pytest.mark.parametrize("reply,why", [("The answer is 41.", "fails the verifier"),
                                       ("Using the hint, the answer is 42.", "mentions the hint"),
                                       ("", "empty")])
def test_rationalisations_that_fail_or_leak_the_hint_are_dropped(store, reply, why):
    task = Task(id="s/train/1", suite="s", split="train", question="What is 6*7?", answer="42")
    store.upsert_tasks([task])
    verify = lambda t, text: type("V", (), {"passed": "42" in text})()  # noqa: E731
    assert rationalise(ScriptedModel([reply]), verify, store, task) is None, why


def test_held_out_tasks_are_never_rationalised(store):
    task = Task(id="s/dev/1", suite="s", split="dev", question="q", answer="42")
    store.upsert_tasks([task])
    model = ScriptedModel([])  # any call would fail the test: the script is empty
    assert rationalise(model, lambda t, x: None, store, task) is None
    assert model.calls == []


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
