"""Soak the worker: N queued tasks through the real queue, solver, store and logs, fake model.

Prints RSS after a warm-up and at the end, and the growth between them. The warm-up (the
first --warmup tasks) is excluded because imports, LangGraph compilation and SQLite caches
fill once and are not growth. Usage:

    python bench/soak.py --tasks 1000
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()

    from agent.config import Settings
    from agent.surfaces.worker import Worker, enqueue, user_task
    from memory.embeddings import HashEmbedder
    from memory.store import Store
    from tests.fakes import ScriptedModel
    from tools.calculator import calculator

    def step(messages, kwargs):
        if kwargs.get("schema") is None:
            return "Adding the two numbers. " * 8
        observed = any("42" in str(m.get("content")) for m in messages[2:] if m["role"] == "user")
        if not observed:
            return {"action": "calculator", "input": "12+30"}
        return {"action": "final_answer", "input": "42"}

    home = Path(tempfile.mkdtemp(prefix="evolve-soak-"))
    settings = Settings(home=home)
    store = Store(settings, embedder=HashEmbedder())
    model = ScriptedModel(step)
    # The fake records every call for test assertions; a soak must not measure that list.
    model.calls = collections.deque(maxlen=8)
    total = args.warmup + args.tasks
    # Half carry an answer (verified), half wait for feedback (pending): both paths soak.
    enqueue(store, [user_task(f"Soak question {i}: what is 12+30?", answer="42" if i % 2 else "") for i in range(total)])

    samples: list[tuple[int, float]] = []

    class Probe(Worker):
        def process(self, item):
            result = super().process(item)
            done = self.counts["done"] + self.counts["error"]
            if done == args.warmup or done % 100 == 0:
                gc.collect()
                samples.append((done, rss_mb()))
            return result

    worker = Probe(settings, store, model, tools=[calculator], exit_when_empty=True, poll_s=0)
    started = time.perf_counter()
    worker.run()
    seconds = time.perf_counter() - started
    base = next(mb for n, mb in samples if n == args.warmup)
    end = samples[-1][1]
    print(f"tasks: {total} ({args.warmup} warm-up), {seconds:.1f} s, {1000 * seconds / total:.1f} ms/task")
    print(f"counts: {worker.counts}")
    print("rss_mb by tasks done: " + ", ".join(f"{n}:{mb:.1f}" for n, mb in samples))
    print(f"rss after warm-up {base:.1f} MB, at end {end:.1f} MB, growth {100 * (end - base) / base:+.2f}%")
    print(f"log size: {(home / 'logs' / 'worker.jsonl').stat().st_size / 2**20:.1f} MB, home: {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
