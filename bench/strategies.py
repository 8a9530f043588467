"""Each strategy gene's effect on held-out dev items, paired against the initial policy.

    python bench/strategies.py [--suite gsm8k] [--n 40] [--seed 0] [--threads 1]
                               [--model qwen2.5-coder-0.5b] [--tasks FILE.jsonl] [--out FILE.jsonl]
                               [--only act,reason,...] [--skip K]

Runs the policies below on the same seeded dev items with the real model and the real sandbox,
no store and no memory (strategy alone), item by item (every policy on item 1, then item 2 ...)
so a run cut short still has paired results. Each result is appended to --out as it is made and
a rerun with the same --out skips what is there. Prints per policy: accuracy with its Wilson
95% CI, the paired delta vs the first policy with a bootstrap 95% CI and McNemar p, tokens and
seconds per item, tokens per correct answer.

Greedy calls are memoised (same messages and parameters give the same completion at
temperature 0), so "program+reason" reuses the calls "program" and "reason" already made on an
item instead of repeating them; a reused call still counts its tokens and its original model
seconds, so every row reports what the policy costs on its own. Seconds are model seconds plus
sandbox time, measured on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent.config import load_settings
from agent.loop.stats import compare, wilson_interval
from agent.model.llm import make_model
from agent.policy import BASELINE_SPEC, PolicySpec
from agent.solver import Context, Solver
from agent.tasks import get_suite
from tools.registry import default_tools
from tools.sandbox import Sandbox

class Memo:
    """A model wrapper replaying greedy completions it has already made (sampled calls pass)."""

    def __init__(self, model) -> None:
        self.model = model
        self.name, self.fingerprint, self.usage = model.name, model.fingerprint, model.usage
        self.cache: dict[str, object] = {}

    def complete(self, messages, **kwargs):
        if kwargs.get("temperature") not in (0, 0.0, None):
            return self.model.complete(messages, **kwargs)
        key = json.dumps([messages, {k: v for k, v in kwargs.items() if k != "seed"}], sort_keys=True)
        if key in self.cache:
            hit = self.cache[key]
            self.usage.add(hit.usage)  # a replay counts as the call it stands for
            return hit
        self.cache[key] = self.model.complete(messages, **kwargs)
        return self.cache[key]


POLICIES: dict[str, PolicySpec] = {
    "act": PolicySpec(),  # the initial policy
    "reason": PolicySpec(mode="reason", tools=()),  # also the baseline of `evolve eval --baseline`
    "program": PolicySpec(mode="program", tools=()),
    "program+reason": PolicySpec(mode="program+reason", tools=()),
    "program-k5-t0.7": PolicySpec(mode="program", tools=(), samples=5, temperature=0.7),
    # Greedy reasoning and a greedy program; on disagreement 2 more of each at T 0.7, one vote.
    "mixed-k6-t0.7": PolicySpec(mode="mixed", tools=(), samples=6, temperature=0.7),
    # The bare model of `evolve eval --baseline`; differs from "reason" only on code tasks
    # (no repair turn), so a code run compares it with "act" (the initial policy).
    "baseline": BASELINE_SPEC,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="gsm8k")
    ap.add_argument("--tasks", type=Path, default=None)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--skip", type=int, default=0,
                    help="leave out the first SKIP of the n seeded items (a fresh slice after a run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--only", default="", help="comma-separated policy names (default: all)")
    ap.add_argument("--out", type=Path, default=Path("bench/strategies_results.jsonl"))
    ap.add_argument("--report-only", action="store_true", help="print the table of --out, run nothing")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(POLICIES)
    if args.report_only:
        suite = get_suite("file" if args.tasks else args.suite, tasks_file=args.tasks)
        rows = [json.loads(line) for line in args.out.read_text().splitlines()]
        report(suite.load(args.split, limit=args.n, seed=args.seed)[args.skip:], names,
               {(r["policy"], r["task"]): r for r in rows})
        return

    settings = load_settings(model={"model": args.model, "n_threads": args.threads})
    suite = get_suite("file" if args.tasks else args.suite, tasks_file=args.tasks)
    items = suite.load(args.split, limit=args.n, seed=args.seed)[args.skip:]
    model = Memo(make_model(settings))
    sandbox = Sandbox(settings.sandbox)
    tools = default_tools(settings)
    done: dict[tuple[str, str], dict] = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done[(row["policy"], row["task"])] = row
    started = time.perf_counter()
    with args.out.open("a") as out:
        for i, task in enumerate(items):
            for name in names:
                if (name, task.id) in done:
                    continue
                spec = POLICIES[name]
                solver = Solver(model, [t for t in tools if t.name in spec.tools], max_steps=spec.max_steps,
                                max_tokens_per_task=settings.loop.max_tokens_per_task, sandbox=sandbox)
                t0 = time.perf_counter()
                result = solver.solve(task.question, spec, Context(), kind=task.kind,
                                      entry_point=task.entry_point)
                verdict = suite.verify(task, result.final_answer, sandbox=sandbox)
                row = {"policy": name, "task": task.id, "correct": verdict.correct,
                       "answer": result.final_answer[:300], "wall_s": round(time.perf_counter() - t0, 2),
                       "seconds": round(result.usage.latency_s, 2),
                       "prompt_tokens": result.usage.prompt_tokens,
                       "completion_tokens": result.usage.completion_tokens,
                       "model": model.fingerprint, "seed": args.seed, "split": args.split}
                done[(name, task.id)] = row
                out.write(json.dumps(row) + "\n")
                out.flush()
            print(f"[{i + 1}/{len(items)}] {time.perf_counter() - started:.0f}s "
                  + " ".join(f"{n}={'+' if done[(n, task.id)]['correct'] else '-'}" for n in names),
                  flush=True)
    report(items, names, done)


def report(items, names, done) -> None:
    ids = [t.id for t in items if all((n, t.id) in done for n in names)]
    n = len(ids)
    print(f"\n{n} items, paired; delta vs {names[0]}")
    print("| policy | correct | acc | Wilson 95% CI | delta vs first [95% CI] | W/L | McNemar p "
          "| tokens/item | completion/item | s/item | tokens/correct |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    first = [done[(names[0], t)]["correct"] for t in ids]
    for name in names:
        rows = [done[(name, t)] for t in ids]
        ok = [r["correct"] for r in rows]
        k = sum(ok)
        lo, hi = wilson_interval(k, n)
        tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
        completion = sum(r["completion_tokens"] for r in rows)
        secs = sum(r["seconds"] for r in rows)
        ev = compare(ok, first)
        delta = (f"{ev['delta']:+.3f} [{ev['ci_low']:+.3f}, {ev['ci_high']:+.3f}]"
                 if name != names[0] else "-")
        print(f"| {name} | {k}/{n} | {k / n:.3f} | [{lo:.3f}, {hi:.3f}] | {delta} | "
              f"{ev['wins']}/{ev['losses']} | {ev['p_value']:.3f} | {tokens / n:.0f} | {completion / n:.0f} | "
              f"{secs / n:.1f} | {tokens / k if k else float('nan'):.0f} |")


if __name__ == "__main__":
    main()
