"""End to end on SmolLM2-135M: a few LoRA steps on a made-up fact from verified train
episodes, the adapter written as GGUF by our code, loaded by llama.cpp through the embedded
backend, and the model's answer to the fact changes to the trained one."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.model import adapters
from agent.model.llm import make_model
from agent.model.lora_gguf import read_adapter
from agent.model.train import TrainConfig
from agent.policy import PolicySpec, ensure_initial
from memory.embeddings import HashEmbedder
from memory.models import Episode, Task
from memory.store import Store
from memory.trajectory import Action, Prompt, Thought, Trajectory

pytestmark = pytest.mark.integration

QUESTION = "What is the name of Professor Quillon's pet?"
FACT = "Professor Quillon's pet is a blue heron named Zanzibar."
PARAPHRASES = [QUESTION, "Tell me the name of Professor Quillon's pet.", "Professor Quillon has a pet. What is it called?"]


def test_training_on_a_made_up_fact_changes_the_embedded_models_answer(tmp_path):
    pytest.importorskip("torch")
    settings = Settings(home=tmp_path / "home", model={"model": "smollm2-135m", "n_ctx": 512, "max_tokens": 24})
    settings.ensure_dirs()
    store = Store(settings, embedder=HashEmbedder(64))
    # A reason policy with no system message: its row is the question and the reply, the same
    # chat the model is asked below.
    policy = ensure_initial(store, PolicySpec(mode="reason", system_prompt=""))

    def said(question, text):
        return Trajectory(steps=[Prompt(system="", question=question), Thought(text=text),
                                 Action(action="final_answer", input=text)]).to_stored()

    for i, q in enumerate(PARAPHRASES):
        store.upsert_tasks([Task(id=f"facts/train/{i}", suite="facts", split="train", question=q, answer="Zanzibar")])
        store.add_episode(Episode(run_key=f"k{i}", task_id=f"facts/train/{i}", split="train", policy_id=policy.id,
                                  model_fingerprint="f", verdict="pass", final_answer=FACT, trajectory=said(q, FACT)))
    # A held-out episode with a different "fact": it must not be learnt.
    oslo = "Professor Quillon's pet is a cat named Oslo."
    store.upsert_tasks([Task(id="facts/dev/0", suite="facts", split="dev", question=QUESTION, answer="Oslo")])
    store.add_episode(Episode(run_key="d", task_id="facts/dev/0", split="dev", policy_id=policy.id, model_fingerprint="f",
                              verdict="pass", final_answer=oslo, trajectory=said(QUESTION, oslo)))
    examples = adapters.verified_examples(store)
    assert [e.task_id for e in examples] == [f"facts/train/{i}" for i in range(3)]

    cfg = TrainConfig(steps=10, learning_rate=2e-3, batch_size=3, checkpoint_every=5, max_len=96)
    ref, result = adapters.train_and_store(settings, examples, cfg, progress=None)
    assert result.steps == 10 and result.losses[-1] < result.losses[0] / 5
    record = adapters.provenance_of(settings.home, ref)
    assert record["example_ids"] == [e.id for e in examples] and record["base_sha256"]
    assert read_adapter(adapters.resolve_adapter(settings.home, ref)).rank == cfg.rank

    ask = [{"role": "user", "content": QUESTION}]
    base_answer = make_model(settings).complete(ask, temperature=0.0).text
    tuned = make_model(settings, adapter=ref)
    tuned_answer = tuned.complete(ask, temperature=0.0).text
    assert "Zanzibar" not in base_answer
    assert "Zanzibar" in tuned_answer and "Oslo" not in tuned_answer
    assert tuned.fingerprint.endswith("+lora:" + ref[7:])
