"""Share of an improvement cycle's wall time spent outside model calls (goal: under 5%).

    python bench/loop_overhead.py [--model smollm2-135m|qwen2.5-coder-0.5b] [--train 4] [--dev 6]

Runs one real cycle (real model, real store with the MiniLM embedder, real checkpointer) in a
temporary EVOLVE_HOME and prints the time per phase, the model's share and the rest.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from agent.config import Settings
from agent.loop.graph import run_improve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--suite", default="arith")
    ap.add_argument("--train", type=int, default=4)
    ap.add_argument("--dev", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=home, model={"model": args.model})
        started = time.perf_counter()
        summary = run_improve(settings, suite=args.suite, cycles=1, train=args.train, dev=args.dev)
        wall = time.perf_counter() - started
    model_s = summary["model_seconds"]
    loop_s = summary["elapsed_s"]
    print(f"model={args.model} suite={args.suite} train={args.train} dev={args.dev}")
    for phase, seconds in summary["phase_seconds"].items():
        print(f"  {phase:<9} {seconds:8.2f} s")
    print(f"cycle wall time (phases)  {loop_s:8.2f} s")
    print(f"inside model calls        {model_s:8.2f} s")
    print(f"outside model calls       {loop_s - model_s:8.2f} s = {100 * (loop_s - model_s) / loop_s:.2f}% of the cycle")
    print(f"process wall time incl. start-up (model load, store open): {wall:.2f} s")


if __name__ == "__main__":
    main()
