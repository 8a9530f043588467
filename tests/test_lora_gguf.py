"""The LoRA GGUF writer: round trip, llama.cpp's names, shapes and q/k row order; and, with the
real SmolLM2 base, that llama.cpp loads what we write and applies it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gguf")

from agent.model import lora_gguf as lg  # noqa: E402
from agent.model.lora_gguf import BaseInfo, LoraAdapter, LoraFormatError  # noqa: E402

BASE = BaseInfo(arch="llama", n_head=4, n_head_kv=2,
                shapes={"blk.0.attn_q.weight": (16, 16), "blk.0.attn_k.weight": (8, 16),
                        "blk.0.attn_v.weight": (8, 16), "blk.0.attn_output.weight": (16, 16)})


def _adapter(rng, rank=2, base=BASE, names=None):
    pairs = {}
    for name in names or base.shapes:
        out, inp = base.shapes[name]
        pairs[name] = (rng.normal(size=(rank, inp)).astype(np.float32), rng.normal(size=(out, rank)).astype(np.float32))
    return LoraAdapter(arch=base.arch, alpha=16.0, pairs=pairs, meta={"provenance": '{"a": 1}'})


def test_round_trip_keeps_every_tensor_alpha_and_provenance(tmp_path):
    rng = np.random.default_rng(0)
    ad = _adapter(rng)
    path = lg.write_adapter(ad, tmp_path / "a.gguf")
    back = lg.read_adapter(path)
    assert back.arch == "llama" and back.alpha == 16.0 and back.rank == 2
    assert back.meta == {"provenance": '{"a": 1}'}
    assert set(back.pairs) == set(ad.pairs)
    for name, (a, b) in ad.pairs.items():
        assert np.array_equal(back.pairs[name][0], a) and np.array_equal(back.pairs[name][1], b)


def test_file_carries_llama_cpp_adapter_keys_and_tensor_names(tmp_path):
    import gguf

    path = lg.write_adapter(_adapter(np.random.default_rng(1)), tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert abs(reader.fields["adapter.lora.alpha"].contents() - 16.0) < 1e-6
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # ne order
    assert shapes["blk.0.attn_k.weight.lora_a"] == [16, 2]  # [in, r]
    assert shapes["blk.0.attn_k.weight.lora_b"] == [2, 8]  # [r, out]


@pytest.mark.parametrize("module,name", [
    ("base_model.model.model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight"),
    ("base_model.model.model.layers.11.self_attn.k_proj", "blk.11.attn_k.weight"),
    ("model.layers.3.self_attn.v_proj", "blk.3.attn_v.weight"),
    ("model.layers.3.self_attn.o_proj", "blk.3.attn_output.weight"),
    ("model.layers.23.mlp.down_proj", "blk.23.ffn_down.weight"),
])
def test_hugging_face_modules_map_to_llama_cpp_names(module, name):
    assert lg.gguf_name(module) == name


def test_unknown_modules_are_refused():
    with pytest.raises(LoraFormatError):
        lg.gguf_name("model.embed_tokens")


def test_q_and_k_rows_go_into_llama_cpp_order_and_transformers_undoes_it():
    tp = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    undo = tp.LlamaTensorProcessor()._reverse_permute_weights  # transformers' own GGUF reader
    rng = np.random.default_rng(2)
    for name, heads in (("blk.0.attn_q.weight", BASE.n_head), ("blk.0.attn_k.weight", BASE.n_head_kv)):
        b = rng.normal(size=(BASE.shapes[name][0], 3)).astype(np.float32)
        moved = lg.to_llama_cpp_order(name, b, BASE)
        assert not np.array_equal(moved, b)
        assert np.array_equal(undo(moved, BASE.n_head, heads if "attn_k" in name else BASE.n_head), b)
    v = rng.normal(size=(8, 3)).astype(np.float32)
    assert lg.to_llama_cpp_order("blk.0.attn_v.weight", v, BASE) is v
    qwen = BaseInfo(arch="qwen2", n_head=4, n_head_kv=2, shapes=BASE.shapes)
    q = rng.normal(size=(16, 3)).astype(np.float32)
    assert lg.to_llama_cpp_order("blk.0.attn_q.weight", q, qwen) is q


def test_from_peft_state_pairs_halves_and_permutes_b(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 16)).astype(np.float32)
    b = rng.normal(size=(16, 2)).astype(np.float32)
    state = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": a,
             "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight": b,
             "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight": np.zeros((16, 16))}
    ad = lg.from_peft_state(state, BASE, alpha=8.0)
    (got_a, got_b), = ad.pairs.values()
    assert np.array_equal(got_a, a)
    assert np.array_equal(got_b, lg.permute_rows_for_llama_cpp(b, BASE.n_head))


# One row per adapter llama.cpp would reject at load time. Never delete a row.
MISFITS = [
    ("wrong architecture", lambda ad: LoraAdapter("qwen2", ad.alpha, ad.pairs)),
    ("no tensors", lambda ad: LoraAdapter("llama", ad.alpha, {})),
    ("tensor the base lacks", lambda ad: LoraAdapter("llama", ad.alpha, {"blk.9.attn_q.weight": ad.pairs["blk.0.attn_q.weight"]})),
    ("A with the wrong input width", lambda ad: LoraAdapter("llama", ad.alpha, {
        "blk.0.attn_q.weight": (np.zeros((2, 15), np.float32), ad.pairs["blk.0.attn_q.weight"][1])})),
    ("B with the wrong output height", lambda ad: LoraAdapter("llama", ad.alpha, {
        "blk.0.attn_k.weight": (ad.pairs["blk.0.attn_k.weight"][0], np.zeros((16, 2), np.float32))})),
    ("ranks of A and B disagree", lambda ad: LoraAdapter("llama", ad.alpha, {
        "blk.0.attn_q.weight": (np.zeros((3, 16), np.float32), np.zeros((16, 2), np.float32))})),
    ("A and B swapped", lambda ad: LoraAdapter("llama", ad.alpha, {
        "blk.0.attn_q.weight": tuple(reversed(ad.pairs["blk.0.attn_q.weight"]))})),
]


@pytest.mark.parametrize("name,mutate", MISFITS, ids=[m[0] for m in MISFITS])
def test_adapters_that_do_not_fit_the_base_are_refused(name, mutate):
    with pytest.raises(LoraFormatError):
        lg.check_fits(mutate(_adapter(np.random.default_rng(4))), BASE)


def test_unsupported_architectures_are_refused_not_guessed():
    with pytest.raises(LoraFormatError, match="not supported"):
        lg.from_peft_state({}, BaseInfo(arch="gpt2", n_head=1, n_head_kv=1), alpha=1.0)


def test_a_model_gguf_is_not_read_as_an_adapter(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), arch="llama")
    w.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()  # noqa: E702
    with pytest.raises(LoraFormatError, match="not a LoRA"):
        lg.read_adapter(tmp_path / "m.gguf")


@pytest.mark.integration
# The qwen2 row was dropped last session after this sequence crashed llama.cpp on it. The cause
# was the test's zero adapter, tagged "llama" on a qwen2 base: llama.cpp applies an adapter of
# another architecture and segfaults in decode (reproduced in isolation; with the right tag the
# three loads in one process pass). adapter_for_base now refuses such an adapter before loading.
@pytest.mark.parametrize("preset,arch", [
    ("smollm2-135m", "llama"),
    pytest.param("qwen2.5-coder-0.5b", "qwen2", marks=pytest.mark.default_model),
])
def test_llama_cpp_loads_our_adapter_and_applies_it(settings, tmp_path, preset, arch):
    """A zero B is the identity (same greedy text as the base); a large random B changes it."""
    import llama_cpp

    from agent.model.local_model import resolve_weights

    cfg = settings.model.model_copy(update={"model": preset})
    path, _ = resolve_weights(cfg, settings.models_dir)
    base = lg.read_base_info(path)
    assert base.arch == arch and base.n_head > base.n_head_kv > 0
    rng = np.random.default_rng(5)
    names = [f"blk.{i}.attn_{p}.weight" for i in range(4) for p in ("q", "k", "v")]
    # Small noise, as a trained adapter's deltas are.
    noisy = _adapter(rng, rank=4, base=base, names=names)
    noisy.pairs = {k: (a * 0.05, b * 0.05) for k, (a, b) in noisy.pairs.items()}
    zero = LoraAdapter(base.arch, noisy.alpha, {k: (a, np.zeros_like(b)) for k, (a, b) in noisy.pairs.items()})
    lg.check_fits(noisy, base)
    msgs = [{"role": "user", "content": "Name a colour."}]
    texts = []
    for ad in (None, zero, noisy):
        lora = str(lg.write_adapter(ad, tmp_path / f"{len(texts)}.gguf")) if ad else None
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, seed=0, verbose=False, lora_path=lora)
        try:
            texts.append(llm.create_chat_completion(messages=msgs, max_tokens=12, temperature=0)["choices"][0]["message"]["content"])
        finally:
            llm.close()
    assert texts[1] == texts[0]
    assert texts[2] != texts[0]


@pytest.mark.parametrize("name,mutate", [
    ("another architecture (the qwen2 crash)", lambda ad: LoraAdapter("qwen2", ad.alpha, ad.pairs)),
    ("a tensor the base lacks", lambda ad: LoraAdapter(ad.arch, ad.alpha, {"blk.99.attn_q.weight": next(iter(ad.pairs.values()))})),
])
def test_an_adapter_that_does_not_fit_the_base_is_refused_before_llama_cpp_sees_it(settings, name, mutate):
    from agent.errors import ConfigError
    from agent.model import adapters
    from agent.model.local_model import resolve_weights

    cfg = settings.model.model_copy(update={"model": "smollm2-135m"})
    path, _ = resolve_weights(cfg, settings.models_dir)
    base = lg.read_base_info(path)
    good = _adapter(np.random.default_rng(6), rank=2, base=base, names=["blk.0.attn_q.weight"])
    ok = adapters.save_adapter(settings.home, good, {"example_ids": ["a"]})
    assert adapters.adapter_for_base(settings.home, ok, path).is_file()
    bad = adapters.save_adapter(settings.home, mutate(good), {"example_ids": ["b"]})
    with pytest.raises(ConfigError, match="does not fit"):
        adapters.adapter_for_base(settings.home, bad, path)
