"""Prompt and decode speed of the embedded model through ChatModel, beside llama-cpp-python direct.

    python bench/model_throughput.py                         # qwen2.5-coder-0.5b, 5 repeats
    python bench/model_throughput.py --model smollm2-135m --repeats 7

Both paths use the same loaded `llama_cpp.Llama` object, the same messages and the same
sampling parameters, and run interleaved (direct, layer, layer, direct, ...) so that
machine noise falls on both alike. Before every call the Llama's token cache is reset, so
each call evaluates its whole prompt (llama-cpp-python otherwise reuses a matching prefix).

- prompt speed: a ~400-token prompt with max_tokens=1; prompt tokens / wall time.
- decode speed: a short prompt that makes the model write code, max_tokens=128;
  (generated tokens - 1) / (wall time - wall time of the same prompt with max_tokens=1).
  The first token comes from the prompt's logits, so the difference is pure decode steps.

Overhead of the layer = median layer time / median direct time - 1, per measurement. The
layer's own CPU cost is also timed against a stub Llama that answers instantly, which is
free of machine noise, and shown as a share of the direct call's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.model import local_model  # noqa: E402
from agent.config import load_settings, runtime_threads_env  # noqa: E402
from agent.model.llm import EmbeddedModel  # noqa: E402

SENTENCES = [
    "The scheduler keeps a queue of pending jobs ordered by priority and arrival time.",
    "Each worker takes the first job, runs it, and writes the result to the store.",
    "When a job fails, the scheduler retries it with exponential backoff up to five times.",
    "Metrics record the latency of every job and the number of retries it needed.",
    "A dashboard shows the queue length, the failure rate and the slowest jobs of the day.",
]


def long_messages(target_tokens: int, llm) -> list[dict]:
    body: list[str] = []
    i = 0
    while True:
        body.append(f"{i + 1}. {SENTENCES[i % len(SENTENCES)]}")
        text = "Summarise these notes in one word.\n" + "\n".join(body)
        if len(llm.tokenize(text.encode(), add_bos=False)) >= target_tokens - 25:  # template adds ~25
            return [{"role": "system", "content": "You are a concise assistant."},
                    {"role": "user", "content": text}]
        i += 1


SHORT = [{"role": "user", "content": "Write a long Python module with ten utility functions for "
                                     "strings and lists, each with a docstring."}]


class _StubLlama:
    """Answers instantly, so timing EmbeddedModel.complete around it measures only the layer."""

    def __init__(self, canned: dict) -> None:
        self._canned = canned

    def create_chat_completion(self, messages, **params):
        return self._canned


def timed(fn) -> tuple[float, dict]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="preset name or GGUF path")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=400)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="0 = evolve's default policy")
    args = ap.parse_args()

    settings = load_settings()
    settings.model.model = args.model
    settings.model.n_threads = args.threads
    settings.model.temperature = 0.0
    path, sha = local_model.resolve_weights(settings.model, settings.models_dir)
    t_load, llm = timed(lambda: local_model.load_llama(settings, path=path))
    model = EmbeddedModel(settings, llama=llm, fingerprint=f"gguf-sha256:{sha}")  # the ChatModel
    omp = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}
    print(f"model={args.model} threads={llm.n_threads} load={t_load:.1f}s nproc={os.cpu_count()} "
          f"load1={os.getloadavg()[0]:.2f} OpenMP env={omp or '{}'} (user-set: {runtime_threads_env() or '{}'})")

    long_msgs = long_messages(args.prompt_tokens, llm)

    def direct(msgs, n):
        llm.reset()
        return llm.create_chat_completion(messages=msgs, max_tokens=n, temperature=0.0, stop=None)

    def layer(msgs, n):
        llm.reset()
        return model.complete(msgs, max_tokens=n, temperature=0.0)

    paths = {"direct": direct, "layer": layer}
    # Warm-up: page in the weights and start the OpenMP team, outside the timings.
    direct(SHORT, 8)
    layer(SHORT, 8)

    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    for rep in range(args.repeats):
        order = ("direct", "layer") if rep % 2 == 0 else ("layer", "direct")
        for name in order:
            for what, msgs, n in (("prompt", long_msgs, 1), ("short1", SHORT, 1),
                                  ("decode", SHORT, args.decode_tokens)):
                dt, out = timed(lambda: paths[name](msgs, n))
                if isinstance(out, dict):  # llama-cpp-python's OpenAI-style response
                    u = out["usage"]
                    ntok = u["prompt_tokens"] if what != "decode" else u["completion_tokens"]
                else:  # agent.model.llm.Completion
                    ntok = out.usage.prompt_tokens if what != "decode" else out.usage.completion_tokens
                times.setdefault((name, what), []).append(dt)
                counts.setdefault((name, what), []).append(ntok)
        print(f"  repeat {rep + 1}/{args.repeats} done, load1={os.getloadavg()[0]:.2f}", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print("| path | prompt tok/s (prompt tokens) | decode tok/s (generated tokens) | "
          "prompt call s | decode call s |")
    print("|---|---|---|---|---|")
    rates = {}
    for name in ("direct", "layer"):
        p_tok = counts[(name, "prompt")][0]
        d_tok = statistics.median(counts[(name, "decode")])
        p_rate = p_tok / med[(name, "prompt")]
        d_rate = (d_tok - 1) / (med[(name, "decode")] - med[(name, "short1")])
        rates[name] = (p_rate, d_rate)
        label = "llama-cpp-python direct" if name == "direct" else "ChatModel (EmbeddedModel)"
        print(f"| {label} | {p_rate:.1f} ({p_tok}) | {d_rate:.1f} ({d_tok:g}) | "
              f"{med[(name, 'prompt')]:.3f} | {med[(name, 'decode')]:.3f} |")

    over_p = med[("layer", "prompt")] / med[("direct", "prompt")] - 1
    over_d = med[("layer", "decode")] / med[("direct", "decode")] - 1
    spread = {k: (min(v), max(v)) for k, v in times.items()}

    # The layer's own cost, free of machine noise: EmbeddedModel.complete around a stub.
    canned = direct(SHORT, 1)
    stub_model = EmbeddedModel(settings, llama=_StubLlama(canned), fingerprint="stub")
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        stub_model.complete(long_msgs, max_tokens=1)
    own_s = (time.perf_counter() - started) / n
    print()
    print(f"layer overhead, end to end (median of {args.repeats}, noisy): prompt call {over_p * 100:+.2f}%, "
          f"decode call {over_d * 100:+.2f}%")
    print(f"  call-time ranges direct/layer: prompt {spread[('direct', 'prompt')][0]:.3f}-"
          f"{spread[('direct', 'prompt')][1]:.3f} / {spread[('layer', 'prompt')][0]:.3f}-"
          f"{spread[('layer', 'prompt')][1]:.3f} s; decode {spread[('direct', 'decode')][0]:.3f}-"
          f"{spread[('direct', 'decode')][1]:.3f} / {spread[('layer', 'decode')][0]:.3f}-"
          f"{spread[('layer', 'decode')][1]:.3f} s")
    print(f"layer's own CPU time per call (stub Llama): {own_s * 1e6:.1f} us = "
          f"{own_s / med[('direct', 'prompt')] * 100:.4f}% of a prompt call, "
          f"{own_s / med[('direct', 'decode')] * 100:.4f}% of a decode call")
    worst = max(over_p, over_d)
    print(f"budget 5%: {'within' if worst <= 0.05 else 'EXCEEDED end to end (see noise ranges)'}; "
          f"own cost {'within' if own_s / med[('direct', 'decode')] <= 0.05 else 'EXCEEDED'}")


if __name__ == "__main__":
    main()
