"""LoRA training on the CPU, from chat examples, on an fp32 copy of the embedded model's weights.

transformers reads the GGUF itself and dequantizes it; that takes about a minute for the 0.5B
model, so the fp32 copy is saved once under EVOLVE_CACHE_DIR/train/ and reused. Loss is taken
on assistant tokens only (the prompt is context, not something to imitate). The run is
deterministic for a seed: batch order is a pure function of (seed, step), dropout is off, and
a checkpoint every N steps holds the adapter and optimizer state, so a killed run resumes at
its last checkpoint and ends where an uninterrupted one would.

Needs the optional extra: pip install 'evolve[train]'.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from agent.errors import ConfigError

ENABLE_HINT = "in-weight updates need the train extra: pip install 'evolve[train]'"
_EXTRA_MODULES = ("torch", "peft", "transformers", "gguf")


def require_train_extra() -> None:
    """Raise one line naming the fix when the optional training stack is missing."""
    import importlib.util

    missing = [m for m in _EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{ENABLE_HINT} (missing: {', '.join(missing)})")


class TrainConfig(BaseModel):
    """Everything that determines the adapter, recorded in its provenance."""

    model_config = ConfigDict(frozen=True)

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 2e-4
    batch_size: int = 4
    max_len: int = 256
    steps: int = 30
    # Wall-clock budget in minutes on top of the step budget (0: steps only).
    max_minutes: float = 0.0
    checkpoint_every: int = 10
    seed: int = 0
    threads: int = 0  # 0: chosen from free cores, as for llama.cpp (agent/model/local_model.py)


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    seconds: float
    tokens: int  # tokens seen by forward passes (padding excluded)
    resumed_from: int
    lora_state: dict[str, Any] = field(repr=False, default_factory=dict)
    stopped_by: str = "steps"  # steps | time

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int, float, float], None]  # step, total, loss, eta seconds


def print_progress(step: int, total: int, loss: float, eta_s: float) -> None:
    width = 24
    filled = int(width * step / max(total, 1))
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\rtrain [{bar}] {step}/{total} loss {loss:.3f} eta {eta_s:5.0f}s")
    if step >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- base weights


def fp32_base_dir(cache_dir: Path, gguf_path: Path, weights_sha: str) -> Path:
    """A Hugging Face directory with the fp32 weights and tokenizer of a GGUF, made once."""
    from filelock import FileLock

    target = Path(cache_dir) / "train" / f"{weights_sha.replace(':', '-')[:40]}-fp32"
    done = target / ".complete"
    if done.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if done.is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = target.with_name(target.name + f".part-{os.getpid()}")
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype="float32")
        # The weights are plain fp32 tensors by now; transformers still tags the model as
        # "gguf-quantized" and refuses to save it. Drop the tag so it saves as an ordinary model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text(json.dumps({"gguf": str(gguf_path), "sha256": weights_sha}))
        if target.exists():  # a stale incomplete copy
            import shutil

            shutil.rmtree(target)
        tmp.rename(target)
    return target


# ---------------------------------------------------------------- tokenization


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken


def encode_chat(tokenizer, messages: Sequence[dict[str, str]], max_len: int) -> Encoded:
    """Token ids of a chat rendered by the model's own template, labels on assistant turns.

    Each assistant turn's span is found by rendering the conversation up to it (with the
    generation prompt) and through it; the template must render prefixes as prefixes, which
    chat templates do. The end-of-turn marker is inside the span, so the model learns to stop.
    """
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not (full.startswith(before) and full.startswith(through)):
            raise ConfigError("the model's chat template does not render prefixes stably; "
                              "assistant-only loss cannot be placed")
        spans.append((len(before), len(through)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = [], []
    for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        ids.append(tid)
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        labels.append(tid if inside else -100)
    return Encoded(ids[:max_len], labels[:max_len])


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Examples for a step: epochs of seeded permutations, so resuming needs only the step."""
    out = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[offset]))
    return out


def _collate(examples: Sequence[Encoded], pad_id: int):
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return ids, labels, mask


# ---------------------------------------------------------------- training


def _lora_state(model) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def train_lora(base_dir: Path, conversations: Sequence[Sequence[dict[str, str]]], cfg: TrainConfig, *,
               run_dir: Path, progress: Progress | None = print_progress,
               clock: Callable[[], float] = time.monotonic,
               stop_after: int | None = None) -> TrainResult:
    """Train a LoRA adapter; resumes from run_dir/checkpoint.pt when one is there.

    `stop_after` ends the run early at that step (after its checkpoint), as a kill would:
    the resume tests use it.
    """
    require_train_extra()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not conversations:
        raise ConfigError("no training examples: in-weight updates need verified train solutions")
    torch.manual_seed(cfg.seed)
    from agent.model.local_model import choose_threads

    # Same load-aware choice as llama.cpp's: oversubscribed cores make every step far slower.
    torch.set_num_threads(choose_threads(cfg.threads))
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    encoded = [encode_chat(tok, c, cfg.max_len) for c in conversations]
    encoded = [e for e in encoded if any(label != -100 for label in e.labels)]
    if not encoded:
        raise ConfigError(f"every example is longer than max_len={cfg.max_len} before its answer; raise it")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    base.config.use_cache = False
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.targets),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pt"
    step, losses, tokens = 0, [], 0
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved.get("config") != cfg.model_dump(mode="json") or saved.get("n_examples") != len(encoded):
            raise ConfigError(f"{ckpt} belongs to another run (settings or examples differ); delete it")
        model.load_state_dict(saved["lora"], strict=False)
        opt.load_state_dict(saved["optimizer"])
        step, losses, tokens = saved["step"], list(saved["losses"]), saved["tokens"]
    resumed_from = step

    started = clock()
    stopped_by = "steps"
    while step < cfg.steps:
        elapsed = clock() - started
        if cfg.max_minutes > 0 and elapsed >= cfg.max_minutes * 60:
            stopped_by = "time"
            break
        batch = [encoded[i] for i in batch_indices(len(encoded), cfg.batch_size, cfg.seed, step)]
        ids, labels, mask = _collate(batch, pad_id)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        step += 1
        losses.append(float(out.loss.detach()))
        tokens += int(mask.sum())
        if progress is not None:
            done = step - resumed_from
            eta = (clock() - started) / done * (cfg.steps - step)
            progress(step, cfg.steps, losses[-1], eta)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = ckpt.with_name(ckpt.name + ".tmp")
            torch.save({"step": step, "losses": losses, "tokens": tokens, "lora": _lora_state(model),
                        "optimizer": opt.state_dict(), "config": cfg.model_dump(mode="json"),
                        "n_examples": len(encoded)}, tmp)
            os.replace(tmp, ckpt)
        if stop_after is not None and step >= stop_after:
            stopped_by = "stopped"
            break
    return TrainResult(steps=step, losses=losses, seconds=clock() - started, tokens=tokens,
                       resumed_from=resumed_from, lora_state=_lora_state(model), stopped_by=stopped_by)
