"""Decode speed of the embedded model per thread setting, on a quiet machine and with one core hogged.

    python bench/threads.py                       # qwen2.5-coder-0.5b, 3 rounds
    python bench/threads.py --model smollm2-135m --rounds 2 --json out.json

Every measurement runs in a fresh subprocess, because libgomp (the OpenMP runtime this
llama-cpp-python build links) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it loads.
Each configuration is measured twice per round: with the machine as it is, and with a
busy-loop process pinned to one core (started before the child, killed after it, and
self-terminating after a deadline in any case). Rounds go through all configurations in
turn so that noise from other work on the machine spreads over every row.

Besides the 1-minute load average, each row records how many cores *other* processes used
during the measurement ("foreign"): busy time from /proc/stat minus the CPU time of this
benchmark's own children (the model process and the hog).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES")

# A raw-completion prompt the coder model continues for hundreds of tokens without an EOS.
PROMPT = (
    "```python\n# utils.py: forty small, independent helper functions for strings, lists,\n"
    "# dictionaries and dates, each with a docstring and a doctest.\n\nimport re\n"
)

# (label, n_threads, environment overrides); None as threads means "evolve's own default".
CONFIGS: list[tuple[str, int | None, dict[str, str]]] = [
    ("1 thread, OMP unset", 1, {}),
    ("1 thread, PASSIVE", 1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 thread, ACTIVE", 1, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("2 threads, OMP unset", 2, {}),
    ("2 threads, ACTIVE", 2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("2 threads, PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, SPINCOUNT=1000", 2, {"GOMP_SPINCOUNT": "1000"}),
    ("2 threads, SPINCOUNT=10000", 2, {"GOMP_SPINCOUNT": "10000"}),
    ("2 threads, SPINCOUNT=100000", 2, {"GOMP_SPINCOUNT": "100000"}),
    ("evolve default (load_llama)", None, {}),
]


# ------------------------------------------------------------------ child: one measurement


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from agent.model import local_model
    from agent.config import load_settings

    settings = load_settings()
    settings.model.model = args.model
    settings.model.n_ctx = 1024
    path, _ = local_model.resolve_weights(settings.model, settings.models_dir)
    started = time.perf_counter()
    if args.threads == 0:
        # Exactly what the agent does: choose_threads() and any OpenMP defaults it applies.
        llm = local_model.load_llama(settings, path=path)
        threads = llm.n_threads if hasattr(llm, "n_threads") else llm.context_params.n_threads
    else:
        import llama_cpp

        threads = args.threads
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads,
                              n_threads_batch=threads, seed=0, verbose=False)
    load_s = time.perf_counter() - started
    decode(llm, 4, args.budget)  # warm-up: page in the weights, start the OpenMP team
    rates = []
    tokens = 0
    for _ in range(args.repeats):
        rate, tokens = decode(llm, args.tokens, args.budget)
        rates.append(rate)
    print(json.dumps({"decode_tps": statistics.median(rates), "rates": rates, "tokens": tokens,
                      "threads": threads, "load_s": load_s,
                      "env": {k: os.environ[k] for k in OMP_VARS if k in os.environ}}))


def decode(llm, max_tokens: int, budget_s: float) -> tuple[float, int]:
    """Greedy streaming generation; tokens/s between the first and the last generated token."""
    llm.reset()  # no prefix reuse between repeats
    marks: list[tuple[float, int]] = []
    for _chunk in llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0, stream=True):
        marks.append((time.perf_counter(), llm.n_tokens))
        if marks[-1][0] - marks[0][0] > budget_s:
            break  # a collapsed configuration must not hold the benchmark for minutes
    if len(marks) < 2 or marks[-1][0] == marks[0][0]:
        return 0.0, len(marks)
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0), n1 - n0


# ------------------------------------------------------------------ parent: the matrix


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def start_hog(core: int, seconds: float) -> subprocess.Popen:
    code = (
        "import os, time\n"
        f"os.sched_setaffinity(0, {{{core}}})\n"
        f"end = time.monotonic() + {seconds}\n"
        "while time.monotonic() < end:\n    pass\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def run_one(model: str, threads: int | None, env_over: dict[str, str], hog: bool,
            tokens: int, budget: float, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(env_over)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model,
           "--threads", str(threads or 0), "--tokens", str(tokens), "--budget", str(budget),
           "--repeats", str(repeats)]
    timeout = 60 + repeats * (budget + 5) * 2
    load1 = os.getloadavg()[0]
    hz = os.sysconf("SC_CLK_TCK")
    busy0, own0, wall0 = _busy_jiffies(), _children_cpu_s(), time.monotonic()
    hog_proc = None
    if hog:
        cores = sorted(os.sched_getaffinity(0))
        hog_proc = start_hog(cores[-1], timeout + 5)
        time.sleep(0.5)
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
    wall = time.monotonic() - wall0
    busy_s = (_busy_jiffies() - busy0) / hz
    own_s = _children_cpu_s() - own0
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(load1=load1, foreign_cores=max(0.0, (busy_s - own_s) / wall), hog=hog)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="generated tokens per measurement")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per child process")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of decoding at most per measurement")
    ap.add_argument("--only", default="", help="comma-separated substrings selecting configurations")
    ap.add_argument("--json", default="", help="also write all raw results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    configs = CONFIGS
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        configs = [c for c in CONFIGS if any(w in c[0] for w in wanted)]
    print(f"model={args.model} nproc={os.cpu_count()} rounds={args.rounds} tokens={args.tokens}",
          flush=True)
    rows: dict[tuple[str, bool], list[dict]] = {}
    for rnd in range(args.rounds):
        for label, threads, env_over in configs:
            for hog in (False, True):
                r = run_one(args.model, threads, env_over, hog, args.tokens, args.budget, args.repeats)
                r.update(label=label, round=rnd)
                rows.setdefault((label, hog), []).append(r)
                print(f"  round {rnd + 1} {label:30s} {'hog ' if hog else 'as is'} "
                      f"{r['decode_tps']:6.1f} tok/s ({r['tokens']} tok, {r['threads']} thr) "
                      f"load1={r['load1']:.2f} foreign={r['foreign_cores']:.2f}", flush=True)

    print()
    print("| configuration | threads | as is: decode tok/s median (min-max) | foreign cores | "
          "load1 | one core hogged: decode tok/s median (min-max) | foreign cores |")
    print("|---|---|---|---|---|---|---|")
    for label, _threads, _env in configs:
        cells = []
        for hog in (False, True):
            rs = rows[(label, hog)]
            tps = [r["decode_tps"] for r in rs]
            cell = f"{statistics.median(tps):.1f} ({min(tps):.1f}-{max(tps):.1f})"
            foreign = statistics.median(r["foreign_cores"] for r in rs)
            cells.append((cell, f"{foreign:.2f}", f"{statistics.median(r['load1'] for r in rs):.2f}"))
        thr = rows[(label, False)][0]["threads"]
        print(f"| {label} | {thr} | {cells[0][0]} | {cells[0][1]} | {cells[0][2]} | "
              f"{cells[1][0]} | {cells[1][1]} |")
    if args.json:
        Path(args.json).write_text(json.dumps([r for rs in rows.values() for r in rs], indent=1))


if __name__ == "__main__":
    main()
