"""The ONNX MiniLM embedder against an independent numpy forward pass and stored reference values.

The fixture tests/fixtures/minilm_reference.json was produced by `numpy_reference` below
(run this file with `python tests/test_memory_embeddings.py --write-fixture`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
SENTENCES = [
    "The cat sits outside",
    "The dog plays in the garden",
    "A man is playing guitar",
    "A woman watches TV",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
]


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def numpy_reference(texts: list[str]) -> np.ndarray:
    """BERT forward pass in float64 numpy, one text at a time (so no padding at all)."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from memory.embeddings import model_files_dir

    d = model_files_dir()
    cfg = json.loads((d / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(d / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.no_padding()
    heads = cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def dense(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    out = []
    for text in texts:
        ids = np.array(tok.encode(text).ids)
        t = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = ln(x, "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            hd = x.shape[1] // heads
            q = dense(x, p + ".attention.self.query").reshape(t, heads, hd).transpose(1, 0, 2)
            k = dense(x, p + ".attention.self.key").reshape(t, heads, hd).transpose(1, 0, 2)
            v = dense(x, p + ".attention.self.value").reshape(t, heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            x = ln(dense(a.transpose(1, 0, 2).reshape(t, -1), p + ".attention.output.dense") + x,
                   p + ".attention.output.LayerNorm")
            h = dense(x, p + ".intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            x = ln(dense(h, p + ".output.dense") + x, p + ".output.LayerNorm")
        m = x.mean(0)
        out.append(m / np.linalg.norm(m))
    return np.array(out)


def _summary(vecs: np.ndarray) -> dict:
    return {
        "first8": [[round(float(v), 6) for v in row[:8]] for row in vecs],
        # Two checksums over all 384 dims: plain and position-weighted sums.
        "sum": [round(float(row.sum()), 6) for row in vecs],
        "weighted_sum": [round(float((row * np.arange(1, row.size + 1)).sum()), 5) for row in vecs],
    }


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from memory.embeddings import MiniLMEmbedder

    return MiniLMEmbedder(tmp_path_factory.mktemp("cache"), batch_size=4)


@pytest.fixture(scope="module")
def reference():
    return numpy_reference(SENTENCES)


@pytest.mark.integration
def test_numpy_reference_matches_stored_fixture(reference):
    stored = json.loads(FIXTURE.read_text())
    assert stored["sentences"] == SENTENCES
    got = _summary(reference)
    np.testing.assert_allclose(got["first8"], stored["first8"], atol=2e-6)
    np.testing.assert_allclose(got["sum"], stored["sum"], atol=2e-5)
    np.testing.assert_allclose(got["weighted_sum"], stored["weighted_sum"], atol=2e-3)


@pytest.mark.integration
def test_onnx_matches_numpy_reference_with_batch_padding(embedder, reference):
    # batch_size=4 puts texts of different lengths in one padded batch: padding must not leak.
    vecs = embedder.embed(SENTENCES)
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32
    cos = (vecs * reference).sum(1)
    assert cos.min() > 0.99999
    np.testing.assert_allclose(vecs, reference, atol=2e-5)
    # Each text alone gives the same vector as inside a batch.
    alone = np.vstack([embedder.embed([s]) for s in SENTENCES])
    np.testing.assert_allclose(alone, vecs, atol=2e-5)


@pytest.mark.integration
def test_published_similarities(embedder):
    # Values printed in the sentence-transformers documentation for all-MiniLM-L6-v2.
    pairs = [("The cat sits outside", "The dog plays in the garden", 0.2838),
             ("A man is playing guitar", "A woman watches TV", -0.0327),
             ("The new movie is awesome", "The new movie is so great", 0.8939)]
    for a, b, want in pairs:
        va, vb = embedder.embed([a, b])
        assert float(va @ vb) == pytest.approx(want, abs=6e-4)


@pytest.mark.integration
def test_chroma_embedding_function_protocol(embedder):
    from chromadb.utils.embedding_functions import known_embedding_functions

    from memory.embeddings import MiniLMEmbedder

    assert known_embedding_functions["evolve-minilm-l6-v2"] is MiniLMEmbedder
    out = embedder(["one text", "another text"])
    assert len(out) == 2 and len(out[0]) == 384
    clone = MiniLMEmbedder.build_from_config(embedder.get_config())
    np.testing.assert_allclose(clone.embed(["one text"]), embedder.embed(["one text"]), atol=1e-6)
    assert embedder.model_id.startswith("all-MiniLM-L6-v2@")
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.integration
def test_graph_is_cached_by_weights_hash(embedder):
    from memory.embeddings import cached_onnx_path

    embedder.embed(["warm up"])
    path, sha = cached_onnx_path(embedder.cache_dir)
    assert path.exists() and sha[:16] in path.name
    mtime = path.stat().st_mtime_ns
    assert cached_onnx_path(embedder.cache_dir)[0].stat().st_mtime_ns == mtime  # not rewritten


@pytest.mark.integration
def test_long_text_is_truncated_not_rejected(embedder):
    v = embedder.embed(["word " * 2000])
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_hash_embedder_is_deterministic_and_unit_length():
    from memory.embeddings import HashEmbedder

    e = HashEmbedder(32)
    a, b, c = e.embed(["Add two numbers", "numbers two add", "!!!"])
    np.testing.assert_allclose(a, b)
    assert abs(float(np.linalg.norm(c)) - 1.0) < 1e-6
    assert HashEmbedder.build_from_config(e.get_config()).dim == 32


if __name__ == "__main__" and "--write-fixture" in sys.argv:
    FIXTURE.write_text(json.dumps({"model": "all-MiniLM-L6-v2", "sentences": SENTENCES,
                                   **_summary(numpy_reference(SENTENCES))}, indent=1) + "\n")
    print(FIXTURE)
