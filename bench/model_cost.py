"""What a model preset costs to set up and run: assembly, disk, memory, speed on N threads.

    python bench/model_cost.py --model qwen2.5-coder-1.5b            # 1 thread, 3 repeats
    python bench/model_cost.py --model qwen2.5-coder-0.5b --threads 1

- assemble_s: concatenating the weight wheels' data files and verifying the SHA-256, into a
  fresh cache directory (the first-run cost; later starts reuse the verified file).
- disk_bytes: the assembled GGUF (pip's installed wheels hold the same bytes again).
- load_s, rss_after_load_mb, peak_rss_mb: llama.cpp loading it; VmRSS/VmHWM of this process.
- prompt_tok_s: a ~300-token prompt with max_tokens=1 (prompt tokens / wall time).
- decode_tok_s: (generated - 1) / (wall time - wall time of the same prompt with max_tokens=1),
  greedy, max_tokens=128; the median of the repeats. decode_tok_per_cpu_s divides by this
  process's CPU time instead: with 1 thread it is close to the idle-machine rate when others
  share the cores (wall-clock rates are then lower by the share of CPU this process got).
Prints one JSON object. Timings on a shared machine are noisy: say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.model import local_model  # noqa: E402


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


CODE = [{"role": "user", "content": "Write a Python module with ten small utility functions for strings "
                                    "and lists, each with a docstring."}]
NOTES = " ".join(f"Note {i}: the worker takes the next job, runs it and records its latency." for i in range(20))
LONG = [{"role": "user", "content": "Summarise these notes in one word.\n" + NOTES}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b", help="preset name")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=2048)
    args = ap.parse_args()
    preset = local_model.PRESETS[args.model]

    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        started = time.perf_counter()
        path = local_model.assemble_preset(preset, Path(tmp))
        assemble_s = time.perf_counter() - started
        disk = path.stat().st_size

        import llama_cpp

        local_model.apply_openmp_defaults(args.threads)
        started = time.perf_counter()
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=args.n_ctx, n_threads=args.threads,
                              n_threads_batch=args.threads, seed=0, verbose=False)
        load_s = time.perf_counter() - started
        rss_load = _rss_mb("VmRSS")

        def run(messages, max_tokens):
            llm.reset()  # evaluate the whole prompt every time (no prefix reuse)
            t0, c0 = time.perf_counter(), time.process_time()
            out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
            return time.perf_counter() - t0, time.process_time() - c0, out["usage"]

        prompt_rates, decode_rates, decode_cpu_rates, generated = [], [], [], []
        for _ in range(args.repeats):
            t, _, usage = run(LONG, 1)
            prompt_rates.append(usage["prompt_tokens"] / t)
            t1, c1, _ = run(CODE, 1)
            tn, cn, usage = run(CODE, 128)
            generated.append(usage["completion_tokens"])
            if usage["completion_tokens"] > 1 and tn > t1:
                decode_rates.append((usage["completion_tokens"] - 1) / (tn - t1))
            if usage["completion_tokens"] > 1 and cn > c1:
                # Per CPU-second: what the rate would be with the core to itself (1 thread).
                decode_cpu_rates.append((usage["completion_tokens"] - 1) / (cn - c1))
        llm.close()

    print(json.dumps({
        "model": args.model, "sha256": preset.sha256, "threads": args.threads, "repeats": args.repeats,
        "assemble_s": round(assemble_s, 1), "disk_bytes": disk, "load_s": round(load_s, 2),
        "rss_after_load_mb": round(rss_load), "peak_rss_mb": round(_rss_mb("VmHWM")),
        "prompt_tok_s": round(statistics.median(prompt_rates), 1),
        "decode_tok_s": round(statistics.median(decode_rates), 1) if decode_rates else None,
        "decode_tok_s_all": [round(r, 1) for r in decode_rates], "generated_tokens": generated,
        "decode_tok_per_cpu_s": round(statistics.median(decode_cpu_rates), 1) if decode_cpu_rates else None,
        "load1_at_end": round(os.getloadavg()[0], 1),
    }, indent=1))


if __name__ == "__main__":
    main()
