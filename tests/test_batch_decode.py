"""k samples in one llama.cpp batch (agent/model/batch_decode.py, EmbeddedModel.complete_many):
the fallback to sequential samples with a fake llama, then the real thing on SmolLM2-135M."""

from __future__ import annotations

import logging

import pytest

from agent.config import Settings
from agent.model import batch_decode
from agent.model.llm import EmbeddedModel, make_model, plain_messages

MESSAGES = [{"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Write a short poem about the sea."}]


class _FakeLlama:
    """Answers create_chat_completion with its seed; is not a llama_cpp.Llama."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def create_chat_completion(self, messages, **params):
        self.requests.append(params)
        return {"usage": {"prompt_tokens": 20, "completion_tokens": 3},
                "choices": [{"message": {"content": f"seed {params.get('seed')}"},
                             "finish_reason": "stop"}]}


def test_a_request_the_batch_cannot_serve_falls_back_to_sequential_samples(settings, caplog) -> None:
    llama = _FakeLlama()
    model = EmbeddedModel(settings, llama=llama, fingerprint="fake:llama")
    with caplog.at_level(logging.WARNING, logger="evolve.model"):
        outs = model.complete_many(MESSAGES, 3, max_tokens=8, temperature=0.7, seed=5)
        again = model.complete_many(MESSAGES, 3, max_tokens=8, temperature=0.7, seed=5)
    assert [o.text for o in outs] == ["seed 5", "seed 6", "seed 7"] == [o.text for o in again]
    assert [r["temperature"] for r in llama.requests] == [0.7] * 6
    [reason] = model.batch_fallbacks
    assert "not a llama_cpp.Llama" in reason and model.batch_fallbacks[reason] == 2
    warnings = [r for r in caplog.records if r.name == "evolve.model"]
    assert len(warnings) == 1 and "one after another" in warnings[0].getMessage()  # said once
    assert model.usage.calls == 6 and model.usage.prompt_tokens == 120


def test_greedy_or_single_samples_never_take_the_batch_path(settings) -> None:
    llama = _FakeLlama()
    model = EmbeddedModel(settings, llama=llama, fingerprint="fake:llama")
    greedy = model.complete_many(MESSAGES, 4, max_tokens=8, temperature=0.0)
    assert len(greedy) == 4 and len(llama.requests) == 1 and sum(o.usage.calls for o in greedy) == 1
    [one] = model.complete_many(MESSAGES, 1, max_tokens=8, temperature=0.9, seed=3)
    assert one.text == "seed 3" and len(llama.requests) == 2
    assert model.batch_fallbacks == {}  # routing, not a fallback


# ---------------------------------------------------------------- the real llama.cpp (SmolLM2)

@pytest.fixture(scope="module")
def small():
    return make_model(Settings(model={"model": "smollm2-135m", "n_threads": 1}))


@pytest.mark.integration
def test_batched_samples_are_reproducible_and_equal_sequential_ones(small) -> None:
    outs = small.complete_many(MESSAGES, 3, max_tokens=8, temperature=0.9, seed=7)
    again = small.complete_many(MESSAGES, 3, max_tokens=8, temperature=0.9, seed=7)
    assert [o.text for o in outs] == [o.text for o in again]
    assert len({o.text for o in outs}) > 1  # each sequence has its own seed
    assert small.batch_fallbacks == {}
    # Usage: one call, the prompt counted once, the completions summed.
    assert [o.usage.calls for o in outs] == [1, 0, 0]
    assert outs[0].usage.prompt_tokens > 5 and sum(o.usage.prompt_tokens for o in outs[1:]) == 0
    assert all(0 < o.usage.completion_tokens <= 8 for o in outs)
    # The same samples as k complete() calls with seeds 7, 8, 9, each evaluating the prompt
    # afresh (reset: otherwise the single path re-evaluates only the prompt's last token over
    # its cached prefix, and those logits differ from a whole-prompt pass by rounding).
    sequential = []
    for j in range(3):
        small._llama.reset()
        sequential.append(small.complete(MESSAGES, max_tokens=8, temperature=0.9, seed=7 + j))
    assert [o.text for o in outs] == [s.text for s in sequential]
    assert outs[0].usage.prompt_tokens == sequential[0].usage.prompt_tokens


@pytest.mark.integration
def test_batched_greedy_sequences_match_complete(small) -> None:
    plain = small.complete(MESSAGES, max_tokens=16, temperature=0.0)
    request = batch_decode.prepare(small._llama, plain_messages(MESSAGES), max_tokens=16, temperature=0.0)
    samples, stats = batch_decode.decoder_for(small._llama).generate(request, [1, 2, 3])
    assert [s.text for s in samples] == [plain.text] * 3
    assert [s.completion_tokens for s in samples] == [plain.usage.completion_tokens] * 3
    assert samples[0].finish_reason == plain.finish_reason
    assert stats.prompt_tokens == plain.usage.prompt_tokens and stats.steps >= 1
    # The Llama's own context is untouched by the batch context next to it.
    assert small.complete(MESSAGES, max_tokens=16, temperature=0.0).text == plain.text
    # k = 1 is the single path itself.
    small._llama.reset()
    [one] = small.complete_many(MESSAGES, 1, max_tokens=10, temperature=0.9, seed=4)
    small._llama.reset()
    assert one.text == small.complete(MESSAGES, max_tokens=10, temperature=0.9, seed=4).text


@pytest.mark.integration
def test_too_many_sequences_for_the_batch_context_is_refused(small) -> None:
    request = batch_decode.prepare(small._llama, plain_messages(MESSAGES), max_tokens=4, temperature=0.9)
    decoder = batch_decode.BatchDecoder(small._llama, max_sequences=2)
    with pytest.raises(batch_decode.BatchUnavailable, match="3 samples exceed"):
        decoder.generate(request, [1, 2, 3])
    decoder.close()


@pytest.mark.integration
def test_a_context_too_small_for_k_samples_falls_back_to_sequential(caplog) -> None:
    model = make_model(Settings(model={"model": "smollm2-135m", "n_threads": 1, "n_ctx": 256}))
    with caplog.at_level(logging.WARNING, logger="evolve.model"):
        outs = model.complete_many(MESSAGES, 3, max_tokens=6, temperature=0.9, seed=1)
    [reason] = model.batch_fallbacks
    assert "KV cells" in reason and "2 x n_ctx" in reason
    assert any("one after another" in r.getMessage() for r in caplog.records)
    assert len(outs) == 3 and [o.usage.calls for o in outs] == [1, 1, 1]
