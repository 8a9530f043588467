"""LoRA adapters in the GGUF form llama.cpp applies on top of a (quantized) base model.

The file is a GGUF whose `general.type` is "adapter", with `adapter.type` = "lora",
`adapter.lora.alpha`, the base's `general.architecture`, and for every adapted base tensor
`<name>.lora_a` and `<name>.lora_b` (e.g. `blk.3.attn_q.weight.lora_a`). llama.cpp computes
`W x + (alpha / r) * B (A x)`, reading r from B, and checks each pair against the base tensor:
A must have ne = [in, r] and B ne = [r, out], where the base weight has ne = [in, out]. numpy
arrays are written with their shape reversed into ne, so A is stored as (r, in) and B as
(out, r): exactly PyTorch's `lora_A.weight` and `lora_B.weight`.

One trap: llama.cpp's llama-family GGUFs keep the rows of the q and k projections in a rotary
order different from Hugging Face's (transformers undoes it when it loads a GGUF). Training
happens in the Hugging Face order, so B's rows for q and k are put back into llama.cpp's order
here. A's columns index the input and need nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Architectures whose q/k rows llama.cpp stores permuted (see the module docstring), and the
# ones this writer has been checked against with llama.cpp. Others are refused, not guessed.
_PERMUTED_QK = {"llama"}
SUPPORTED_ARCHS = {"llama", "qwen2"}

# Hugging Face module path suffix -> llama.cpp tensor name inside block N.
_HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_HF_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.(" + "|".join(re.escape(k) for k in _HF_TO_GGUF) + r")$")


class LoraFormatError(ValueError):
    """An adapter that does not fit its base model or is not a LoRA GGUF."""


@dataclass(frozen=True)
class BaseInfo:
    """What the writer needs to know about the base GGUF."""

    arch: str
    n_head: int
    n_head_kv: int
    # base tensor name -> numpy-order shape (out, in), i.e. ne reversed
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class LoraAdapter:
    arch: str
    alpha: float
    # llama.cpp base tensor name -> (A (r, in), B (out, r)), both float32, llama.cpp row order
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    # extra string metadata stored under "evolve.*" (provenance)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return next(iter(self.pairs.values()))[0].shape[0] if self.pairs else 0


def gguf_name(hf_module: str) -> str:
    """`base_model.model.model.layers.3.self_attn.q_proj` -> `blk.3.attn_q.weight`."""
    m = _HF_NAME.search(hf_module)
    if m is None:
        raise LoraFormatError(f"no llama.cpp tensor for module {hf_module!r}; adapt only "
                              f"{', '.join(sorted(_HF_TO_GGUF))}")
    return f"blk.{m.group(1)}.{_HF_TO_GGUF[m.group(2)]}.weight"


def _field_value(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.contents()


def read_base_info(path: str | Path) -> BaseInfo:
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = _field_value(reader, "general.architecture")
    if arch is None:
        raise LoraFormatError(f"{path} has no general.architecture; is it a GGUF model?")
    n_head = int(_field_value(reader, f"{arch}.attention.head_count") or 0)
    n_head_kv = int(_field_value(reader, f"{arch}.attention.head_count_kv") or n_head)
    shapes = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in reader.tensors}
    return BaseInfo(arch=arch, n_head=n_head, n_head_kv=n_head_kv, shapes=shapes)


def permute_rows_for_llama_cpp(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder output rows from Hugging Face's rotary layout to llama.cpp's.

    Within each head, HF keeps the first halves of the rotary pairs then the second halves;
    llama.cpp interleaves them. `n_head` is the number of heads the rows span.
    """
    out = rows.shape[0]
    half = out // n_head // 2
    return rows.reshape(n_head, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def to_llama_cpp_order(name: str, b: np.ndarray, base: BaseInfo) -> np.ndarray:
    if base.arch not in _PERMUTED_QK:
        return b
    if ".attn_q." in name:
        return permute_rows_for_llama_cpp(b, base.n_head)
    if ".attn_k." in name:
        return permute_rows_for_llama_cpp(b, base.n_head_kv)
    return b


def from_peft_state(state: dict, base: BaseInfo, alpha: float, meta: dict[str, str] | None = None) -> LoraAdapter:
    """Build an adapter from a peft state dict (`...q_proj.lora_A.weight` tensors)."""
    if base.arch not in SUPPORTED_ARCHS:
        raise LoraFormatError(f"LoRA export for architecture {base.arch!r} is not supported "
                              f"(supported: {', '.join(sorted(SUPPORTED_ARCHS))})")
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in state.items():
        m = re.match(r"(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if m is None:
            continue
        arr = tensor.detach().to("cpu").float().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        halves.setdefault(gguf_name(m.group(1)), {})[m.group(2)] = np.ascontiguousarray(arr, dtype=np.float32)
    pairs = {}
    for name, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            raise LoraFormatError(f"{name}: adapter has only lora_{''.join(ab)}")
        pairs[name] = (ab["A"], np.ascontiguousarray(to_llama_cpp_order(name, ab["B"], base)))
    adapter = LoraAdapter(arch=base.arch, alpha=float(alpha), pairs=pairs, meta=dict(meta or {}))
    check_fits(adapter, base)
    return adapter


def check_fits(adapter: LoraAdapter, base: BaseInfo) -> None:
    """Refuse an adapter llama.cpp would reject (it fails at load with a terse message)."""
    if adapter.arch != base.arch:
        raise LoraFormatError(f"adapter is for {adapter.arch!r}, base model is {base.arch!r}")
    if not adapter.pairs:
        raise LoraFormatError("adapter has no tensors")
    for name, (a, b) in adapter.pairs.items():
        if name not in base.shapes:
            raise LoraFormatError(f"base model has no tensor {name!r}")
        out, inp = base.shapes[name]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != inp or b.shape[0] != out or a.shape[0] != b.shape[1]:
            raise LoraFormatError(f"{name}: lora_a {a.shape} / lora_b {b.shape} do not fit base ({out}, {inp})")


def write_adapter(adapter: LoraAdapter, path: str | Path) -> Path:
    """Write the adapter as a llama.cpp LoRA GGUF, atomically."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=adapter.arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(adapter.alpha))
    for key, value in sorted(adapter.meta.items()):
        writer.add_string(f"evolve.{key}", str(value))
    for name, (a, b) in adapter.pairs.items():
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def read_adapter(path: str | Path) -> LoraAdapter:
    """Read back a LoRA GGUF (ours or llama.cpp's converter's)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    if _field_value(reader, "general.type") != "adapter" or _field_value(reader, "adapter.type") != "lora":
        raise LoraFormatError(f"{path} is not a LoRA adapter GGUF")
    arch = _field_value(reader, "general.architecture")
    alpha = float(_field_value(reader, "adapter.lora.alpha"))
    meta = {k[len("evolve."):]: str(_field_value(reader, k)) for k in reader.fields if k.startswith("evolve.")}
    found: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        base_name, _, half = t.name.rpartition(".")
        if half not in ("lora_a", "lora_b"):
            raise LoraFormatError(f"{path}: unexpected tensor {t.name!r}")
        shape = tuple(int(x) for x in reversed(t.shape))
        found.setdefault(base_name, {})[half] = np.array(t.data, dtype=np.float32).reshape(shape)
    pairs = {name: (ab["lora_a"], ab["lora_b"]) for name, ab in sorted(found.items())}
    return LoraAdapter(arch=arch, alpha=alpha, pairs=pairs, meta=meta)
