"""Aggregate decode speed of k samples decoded together in one llama.cpp batch, side by side.

    python bench/batch_decode.py                        # qwen2.5-coder-0.5b, 1 thread, 1, 4, 8 sequences
    python bench/batch_decode.py --model smollm2-135m --sequences 1,2,4 --rounds 1

One loaded Llama, one prompt (a word problem with the program request of the "program" mode),
temperature 0.7, sequence j seeded seed + j, the same path EmbeddedModel.complete_many takes
(agent/model/batch_decode.py). For every configuration and round it prints:

- tokens: completion tokens generated, summed over the sequences (a sequence may end early at
  its end-of-generation token, so this is counted, not assumed);
- prompt s: the shared prompt's evaluation (once per call, whatever k);
- decode s: sampling and batched decoding after the prompt;
- decode tok/s: tokens / decode s, the aggregate decode rate; wall tok/s: tokens / (prompt + decode);
- cpu s and tok/cpu-s: the process's CPU time for the call (1 thread: the compute it needed,
  prompt included), which a shared machine's preemption inflates far less than wall time.

"sequential k" is the path complete_many replaced: k complete() calls one after another (the
Llama reuses the cached prompt prefix between them, as it did). Rounds run the configurations
interleaved so machine noise falls on all alike; the summary shows the median per configuration.
A batch context is sized for its k, so alternating k re-creates it; that happens before the
timed part of each call (prompt s + decode s) and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import prompts  # noqa: E402
from agent.config import load_settings  # noqa: E402
from agent.model import batch_decode, local_model  # noqa: E402
from agent.model.llm import EmbeddedModel  # noqa: E402

QUESTION = ("A bakery sells muffins for $3 each and cookies for $1.50 each. On Monday it sold 48 "
            "muffins and twice as many cookies, and on Tuesday it sold 20% more of each. How much "
            "money did the bakery take in over the two days?")


def messages() -> list[dict]:
    return [{"role": "system", "content": prompts.PROGRAM_SYSTEM},
            {"role": "user", "content": prompts.program_request(QUESTION)}]


def run_batch(decoder, request, k: int, seed: int) -> dict:
    cpu = time.process_time()
    samples, stats = decoder.generate(request, [seed + j for j in range(k)])
    tokens = sum(s.completion_tokens for s in samples)
    return {"tokens": tokens, "prompt_s": stats.prompt_s, "decode_s": stats.decode_s,
            "wall_s": stats.prompt_s + stats.decode_s, "cpu_s": time.process_time() - cpu}


def run_sequential(model: EmbeddedModel, k: int, max_tokens: int, temperature: float, seed: int) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    outs = [model.complete(messages(), max_tokens=max_tokens, temperature=temperature, seed=seed + j)
            for j in range(k)]
    wall = time.perf_counter() - started
    return {"tokens": sum(o.usage.completion_tokens for o in outs), "prompt_s": float("nan"),
            "decode_s": float("nan"), "wall_s": wall, "cpu_s": time.process_time() - cpu}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="preset name or GGUF path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sequences", default="1,4,8", help="comma-separated k values")
    ap.add_argument("--sequential", type=int, default=4, help="also time k complete() calls in a row (0: skip)")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    settings = load_settings()
    settings.model.model = args.model
    settings.model.n_threads = args.threads
    path, sha = local_model.resolve_weights(settings.model, settings.models_dir)
    llm = local_model.load_llama(settings, path=path, n_threads=args.threads)
    model = EmbeddedModel(settings, llama=llm, fingerprint=f"gguf-sha256:{sha}")
    request = batch_decode.prepare(llm, messages(), max_tokens=args.max_tokens, temperature=args.temperature)
    decoder = batch_decode.decoder_for(llm)
    ks = [int(k) for k in args.sequences.split(",")]
    print(f"model {args.model} ({sha[:12]}), {args.threads} thread(s), prompt {len(request.prompt)} tokens, "
          f"max_tokens {args.max_tokens}, temperature {args.temperature}, seed {args.seed}, "
          f"rounds {args.rounds}, commit {commit()}")
    decoder.generate(batch_decode.Request(request.prompt, request.stop, 2, request.sampling), [args.seed])

    configs = [(f"batch k={k}", k) for k in ks]
    if args.sequential:
        configs.append((f"sequential k={args.sequential}", -args.sequential))
    results: dict[str, list[dict]] = {name: [] for name, _ in configs}
    started = time.perf_counter()
    print(f"{'round':>5} {'configuration':<16} {'tokens':>6} {'prompt s':>8} {'decode s':>8} "
          f"{'wall s':>7} {'decode tok/s':>12} {'wall tok/s':>10} {'cpu s':>7} {'tok/cpu-s':>9}")
    for rnd in range(args.rounds):
        order = configs if rnd % 2 == 0 else configs[::-1]
        for name, k in order:
            if k > 0:  # generate() (re)creates its context for k before its clock starts
                row = run_batch(decoder, request, k, args.seed)
            else:
                row = run_sequential(model, -k, args.max_tokens, args.temperature, args.seed)
            results[name].append(row)
            decode_rate = row["tokens"] / row["decode_s"] if row["decode_s"] == row["decode_s"] else float("nan")
            print(f"{rnd + 1:>5} {name:<16} {row['tokens']:>6} {row['prompt_s']:>8.2f} {row['decode_s']:>8.2f} "
                  f"{row['wall_s']:>7.2f} {decode_rate:>12.1f} {row['tokens'] / row['wall_s']:>10.1f} "
                  f"{row['cpu_s']:>7.2f} {row['tokens'] / row['cpu_s']:>9.1f}", flush=True)
    print(f"\nmedian over {args.rounds} round(s); total wall {time.perf_counter() - started:.0f} s")
    print(f"{'configuration':<16} {'tokens':>6} {'decode tok/s':>12} {'wall tok/s':>10}")
    for name, _ in configs:
        rows = results[name]
        decode = [r["tokens"] / r["decode_s"] for r in rows if r["decode_s"] == r["decode_s"]]
        print(f"{name:<16} {statistics.median(r['tokens'] for r in rows):>6.0f} "
              f"{statistics.median(decode) if decode else float('nan'):>12.1f} "
              f"{statistics.median(r['tokens'] / r['wall_s'] for r in rows):>10.1f}")


if __name__ == "__main__":
    main()
